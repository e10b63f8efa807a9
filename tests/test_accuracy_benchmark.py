"""benchmarks/accuracy.py's table: mean ± sample std over test sets, diagnosis counts summed."""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from accuracy import VOTE_IOUS, table  # noqa: E402


def test_table_gives_mean_and_sample_std_per_variant_and_summed_counts():
    rows = {v: [{"m": 0.5 + k}, {"m": 0.7 + k}] for k, v in enumerate(VOTE_IOUS)}
    counts = {v: np.arange(6) * (k + 1) for k, v in enumerate(VOTE_IOUS)}
    lines = table(rows, counts).splitlines()
    assert lines[:3] == [
        "| variant | m |",
        "|---|---|",
        "| S-CNN boundaries | 0.600 ± 0.141 |",
    ]
    assert lines[3] == "| boundary voting, IoU ≥ 0.5 | 1.600 ± 0.141 |"
    assert lines[-1] == "| boundary voting, IoU ≥ 0.4 | 0 | 3 | 6 | 9 | 12 | 15 |"
