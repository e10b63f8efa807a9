import subprocess
import sys

import pytest

from scnn.allocator import keep_large_allocations

# Allocates, uses and frees three 24 MB arrays per round, then prints the minor page faults
# per round: each fault is a page the kernel handed out afresh (and zeroed).
CHILD = """
import resource, sys
import numpy as np
from scnn.allocator import keep_large_allocations
if sys.argv[1] == "keep":
    assert keep_large_allocations()
def work():
    a = np.ones(3_000_000)
    b = a * 2
    return float((b + a)[::4096].sum())
for _ in range(3):
    work()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    work()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def _faults_per_round(mode: str) -> float:
    run = subprocess.run(
        [sys.executable, "-c", CHILD, mode], capture_output=True, text=True, check=True
    )
    return float(run.stdout.split()[-1])


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
        run = subprocess.run(
            [sys.executable, "-c", ARENAS_CHILD, mode], capture_output=True, text=True, check=True
        )
        return int(run.stdout.split()[-1])

    assert arenas("default") >= 4  # glibc's default: an arena per thread, up to 8 per core
    assert arenas("keep") == 1
