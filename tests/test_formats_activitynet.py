"""ActivityNet JSON: the evaluators' example ground truth, results that list every video."""

import json

from conftest import ACTIVITYNET_EXAMPLE
from formats_examples import DETECTIONS

from scnn.formats import load_detections, load_ground_truth, write_detections


def test_activitynet_subset_filter():
    gt = load_ground_truth(ACTIVITYNET_EXAMPLE / "synthetic_gt.json", subset="testing")
    assert gt.classes == ("ClassA", "ClassB")
    assert len(gt.instances) == 6 and gt.videos == ("v1", "v2", "v3")
    assert gt.durations_s["v2"] == 120.0
    empty = load_ground_truth(ACTIVITYNET_EXAMPLE / "synthetic_gt.json", subset="validation")
    assert empty.instances == ()


def test_results_list_every_video_processed(tmp_path):
    write_detections(tmp_path / "det.json", DETECTIONS[:1], videos=("video_a", "video_c"))
    results = json.loads((tmp_path / "det.json").read_text())["results"]
    assert results == {
        "video_a": [{"label": "Diving", "score": 0.912345678, "segment": [1.25, 4.0]}],
        "video_c": [],
    }
    assert load_detections(tmp_path / "det.json") == DETECTIONS[:1]
