"""glibc's malloc settings seen from outside: the page faults of allocating and freeing large
arrays (scnn.allocator), counted in a child process with the tests' helpers importable."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent


def faults_per_round() -> float:
    """Minor page faults per round of allocating, using and freeing three 24 MB arrays, after
    3 rounds of warm-up: thousands with glibc's default settings (each a page the kernel hands
    out afresh, zeroed), a few once scnn.allocator has set them."""

    def work() -> float:
        a = np.ones(3_000_000)
        b = a * 2
        return float((b + a)[::4096].sum())

    for _ in range(3):
        work()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        work()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10


def run_child(code: str, *args: str) -> subprocess.CompletedProcess:
    """``python -c code args`` in a fresh process that can import the tests' helpers."""
    paths = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": paths},
        check=False,
    )
