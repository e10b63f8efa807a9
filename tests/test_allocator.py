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
