"""Keep the CPU's large, short-lived tensors in reused memory instead of fresh pages.

glibc's malloc hands every request above its mmap threshold (128 KiB at start, raised
only as large blocks are freed) fresh pages from the kernel, and gives the top of its heap
back whenever more than twice that threshold lies free there. A network on a CPU allocates
and frees megabytes of activations per call, so each call can page-fault them in again,
zeroed by the kernel. Measured on 2 cores (benchmarks/speed/RESULTS.md): the CPU model's bf16
training step 191-201 -> 208-222 clips/s (3 interleaved pairs of fresh processes). Inference
gained most before ReLU moved after pooling (fresh process 590 -> 1 010 clips/s; the full C3D
81 -> 104 % of the bf16 matmul rate); that move removed the largest temporaries, and
inference now gains ~2 %.

Kept memory is reused only within its arena: glibc gives each thread that allocates at
once an arena of its own (up to 8 per core), a thread's arena made of 64 MiB heaps that a
large block cannot span. Detection's peak with its two lanes, bundled model, 10-minute
video: 554.4-554.7 MB with an arena per thread, 447.3-508.1 MB with one arena for every
thread, and a 2-hour run held 463.1 MB from its 5th minute to its 92nd (benchmarks/speed/
RESULTS.md, "Memory along a video: clip queues that grow once"). Threads that allocate at
once in one heap still interleave by chance, so the peak varies from run to run. Threads
created after this call share the arenas that exist; called before any other thread
allocates, that is the main one.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 32 * 2**20  # the largest glibc accepts on 64-bit
TRIM_THRESHOLD_BYTES = 2**30  # free memory kept at the heap's top before returning it
ARENAS = 1  # malloc arenas (heaps) that threads may create
OWN_PAGES_BYTES = 128 * 2**10  # glibc's own mmap threshold at start: see returned_when_freed


@functools.cache
def keep_large_allocations() -> bool:
    """Serve allocations up to 32 MiB from the heap, keep up to 1 GiB of freed memory for
    reuse, and create no further arena for new threads. Process-wide; a no-op returning
    False where malloc is not glibc's. Memory in use is unchanged; the process may hold
    freed memory instead of returning it."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = all(
        mallopt(parameter, value)
        for parameter, value in (
            (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (M_ARENA_MAX, ARENAS),
        )
    )
    if not done:
        log.debug("mallopt refused: large CPU tensors keep glibc's default handling")
    return done


_opening = threading.Lock()
_inside = 0  # callers inside returned_when_freed


@contextlib.contextmanager
def returned_when_freed() -> Iterator[None]:
    """While inside (in any thread), blocks above 128 KiB get pages of their own again, given
    back to the system when freed, where :func:`keep_large_allocations` keeps them.

    For what grows while it is built and lives as long as it is used, such as the sample index
    FFmpeg builds when it opens an MP4, growing its arrays a few percent at a time: in the
    kept heap every array it outgrew stays behind as held free memory (opening a 2-hour MP4
    left 22.4 MB, 9.8 MB of it in use; benchmarks/speed/RESULTS.md), and the index is built
    again each time the file is opened. A no-op unless keep_large_allocations has applied."""
    global _inside
    if not keep_large_allocations.cache_info().currsize or not keep_large_allocations():
        yield
        return
    mallopt = ctypes.CDLL(None).mallopt
    with _opening:
        _inside += 1
        mallopt(M_MMAP_THRESHOLD, OWN_PAGES_BYTES)
    try:
        yield
    finally:
        with _opening:
            _inside -= 1
            if not _inside:
                mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
