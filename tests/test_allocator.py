import av
import numpy as np
import pytest
from page_faults import run_child

from scnn.allocator import keep_large_allocations

# Sets the allocator or not, then prints the page faults per round (tests/page_faults.py).
CHILD = """
import sys
from page_faults import faults_per_round
from scnn.allocator import keep_large_allocations
if sys.argv[1] == "keep":
    assert keep_large_allocations()
print(faults_per_round())
"""


def _faults_per_round(mode: str) -> float:
    child = run_child(CHILD, mode)
    assert child.returncode == 0, child.stderr
    return float(child.stdout.split()[-1])


@pytest.mark.skipif(not keep_large_allocations(), reason="malloc is not glibc's")
def test_large_tensors_reuse_memory_instead_of_faulting_in_fresh_pages():
    default, kept = _faults_per_round("default"), _faults_per_round("keep")
    assert default > 1000  # glibc's default: thousands of fresh 4 KiB pages every round
    assert kept < 20


# Threads that each hold an 8 MB array at once, then the number of malloc arenas (heaps) that
# glibc's malloc_info lists.
ARENAS_CHILD = """
import ctypes, re, sys, tempfile, threading
import numpy as np
from scnn.allocator import keep_large_allocations
if sys.argv[1] == "keep":
    assert keep_large_allocations()
together = threading.Barrier(4)
def hold():
    block = np.ones(1_000_000)
    together.wait()
    return block
threads = [threading.Thread(target=hold) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
libc = ctypes.CDLL(None)
libc.fopen.restype = ctypes.c_void_p
with tempfile.NamedTemporaryFile("r") as info:
    file = ctypes.c_void_p(libc.fopen(info.name.encode(), b"w"))
    libc.malloc_info(0, file)
    libc.fclose(file)
    print(len(re.findall('<heap nr=', info.read())))
"""


@pytest.mark.skipif(not keep_large_allocations(), reason="malloc is not glibc's")
def test_threads_share_one_malloc_arena():
    def arenas(mode: str) -> int:
        child = run_child(ARENAS_CHILD, mode)
        assert child.returncode == 0, child.stderr
        return int(child.stdout.split()[-1])

    assert arenas("default") >= 4  # glibc's default: an arena per thread, up to 8 per core
    assert arenas("keep") == 1


# Opens and closes the MP4 given, then prints how much the heap grew meanwhile (glibc's
# mallinfo2: the heap's size); "plain" opens it without returned_when_freed.
OPEN_CHILD = """
import contextlib, ctypes, sys
from scnn import video_source
from scnn.allocator import keep_large_allocations
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
assert keep_large_allocations()
if sys.argv[2] == "plain":
    video_source.returned_when_freed = contextlib.nullcontext
before = libc.mallinfo2().arena
with video_source.open_video(sys.argv[1], 10.0) as container:
    next(container.demux(container.streams.video[0]))
print(libc.mallinfo2().arena - before)
"""


@pytest.mark.skipif(not keep_large_allocations(), reason="malloc is not glibc's")
def test_opening_a_long_mp4_leaves_no_memory_behind_in_the_heap(tmp_path):
    # FFmpeg builds an MP4's sample index in arrays it grows as it reads: 30 minutes at 25 fps
    path = tmp_path / "long.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width = stream.height = 16
        stream.options = {"preset": "ultrafast"}
        picture = av.VideoFrame.from_ndarray(np.zeros((16, 16, 3), np.uint8), format="rgb24")
        for number in range(45_000):
            picture.pts = number
            container.mux(stream.encode(picture))
        container.mux(stream.encode())

    def heap_growth(mode: str) -> int:
        child = run_child(OPEN_CHILD, str(path), mode)
        assert child.returncode == 0, child.stderr
        return int(child.stdout.split()[-1])

    assert heap_growth("plain") > 2 * 2**20  # the arrays it outgrew, kept by the heap
    assert heap_growth("returned") < 2**19
