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
