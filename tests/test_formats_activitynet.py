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


def test_classes_come_from_the_taxonomy_also_without_instances_in_the_subset(tmp_path):
    """A subset without an instance of some class still knows the class (from ``taxonomy``'s
    leaves, in file order), so detections of it are read, not refused as unknown."""
    gt = tmp_path / "gt.json"
    taxonomy = [
        {"nodeId": 1, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 2, "nodeName": "Swim", "parentId": 1, "parentName": "Root"},
        {"nodeId": 3, "nodeName": "Run", "parentId": 1, "parentName": "Root"},
    ]
    database = {
        "a": {"subset": "training", "annotations": [{"segment": [0, 1], "label": "Run"}]},
        "b": {"subset": "testing", "annotations": [{"segment": [2, 3], "label": "Run"}]},
        "c": {"subset": "testing", "annotations": [{"segment": [4, 5], "label": "Jump"}]},
    }
    gt.write_text(json.dumps({"taxonomy": taxonomy, "database": database}))
    loaded = load_ground_truth(gt, subset="testing")
    assert loaded.classes == ("Swim", "Run", "Jump")
    assert [i.label for i in loaded.instances] == ["Run", "Jump"]
    pred = tmp_path / "pred.json"
    pred.write_text(
        json.dumps({"results": {"b": [{"segment": [0, 1], "label": "Swim", "score": 1}]}})
    )
    assert [d.label for d in load_detections(pred, classes=loaded.classes)] == ["Swim"]
