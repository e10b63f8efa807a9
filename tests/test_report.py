"""Tests for report.py: the pictures."""

from __future__ import annotations

import subprocess
import sys

from scnn.evaluate import precision_recall
from scnn.records import Detection, Instance
from scnn.report import plot_precision_recall, plot_timeline

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png(tmp_path):
    truth = (
        Instance("a", 1.0, 3.0, "Jump"),
        Instance("a", 5.0, 6.0, "Jump"),
        Instance("a", 2.0, 4.0, "Run"),
        Instance("b", 0.5, 1.5, "Run"),
    )
    found = [
        Detection("a", 1.0, 3.0, "Jump", 0.9),
        Detection("a", 1.5, 3.0, "Jump", 0.8),
        Detection("a", 5.0, 7.0, "Jump", 0.4),
        Detection("a", 2.0, 4.0, "Jump", 0.3),
        Detection("b", 0.5, 1.5, "Run", 0.7),
    ]
    plot_timeline(tmp_path / "t.png", "a", 8.0, ("Jump", "Run"), found, truth)
    recall, precision = precision_recall([0.9, 0.1], [True, False], 2)
    plot_precision_recall(tmp_path / "pr.png", {"Jump": (recall, precision)}, ("Jump",), "PR")
    for name in ("t.png", "pr.png"):
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_pictures_leave_the_matplotlib_backend_alone(tmp_path):
    """A notebook's own backend and pyplot state survive importing scnn and drawing."""
    script = f"""
import sys
import matplotlib
matplotlib.use("svg")
from scnn import demo, html_report, report
from scnn.records import Detection, GroundTruth, Instance
truth = (Instance("v", 1.0, 2.0, "A"),)
found = [Detection("v", 1.0, 2.5, "A", 0.7)]
report.plot_timeline({str(tmp_path / "t.png")!r}, "v", 4.0, ("A",), found, truth)
gt = GroundTruth(("A",), truth, videos=("v",), durations_s={{"v": 4}})
html_report.write_html_report({str(tmp_path / "r")!r}, found, gt=gt)
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["svg", "False"]
    for picture in (tmp_path / "t.png", tmp_path / "r" / "precision_recall.png"):
        assert picture.read_bytes().startswith(PNG_SIGNATURE)
