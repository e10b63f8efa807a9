"""Tests for diagnose.py: DETAD's error types, mAP gains, missed instances, wrong labels."""

import json

import numpy as np
import pytest

from scnn.cli import main
from scnn.diagnose import (
    ERROR_TYPES,
    OUTCOMES,
    classify_detections,
    diagnose,
    plot_false_negatives,
    plot_false_positives,
    plot_wrong_labels,
)
from scnn.errors import ScnnError
from scnn.evaluate import evaluate
from scnn.formats import write_detections, write_ground_truth
from scnn.html_report import write_html_report
from scnn.records import Detection, GroundTruth, Instance

# Video v1: A [0, 10], B [20, 30], A [40, 50]; video v3: B [0, 20], which nothing finds.
HAND_GT = GroundTruth(
    classes=("A", "B"),
    instances=(
        Instance("v1", 0.0, 10.0, "A"),
        Instance("v1", 20.0, 30.0, "B"),
        Instance("v1", 40.0, 50.0, "A"),
        Instance("v3", 0.0, 20.0, "B"),
    ),
)
# Class A by descending score, then class B; each line says why it is what it is.
HAND_DETECTIONS = [
    Detection("v1", 0.0, 10.0, "A", 0.9),  # true positive: A [0, 10]
    Detection("v1", 1.0, 10.0, "A", 0.8),  # double detection: tIoU 0.9 with the taken A [0, 10]
    Detection("v1", 20.0, 30.0, "A", 0.7),  # wrong label: tIoU 1 with B [20, 30]
    Detection("v1", 45.5, 50.0, "A", 0.65),  # localization: tIoU 0.45 with A [40, 50]
    Detection("v1", 40.0, 44.0, "A", 0.6),  # localization: tIoU 0.4 with A [40, 50]
    Detection("v1", 25.0, 35.0, "A", 0.5),  # confusion: tIoU 1/3 with B [20, 30]
    Detection("v1", 40.0, 50.0, "A", 0.3),  # true positive: A [40, 50]
    Detection("v1", 60.0, 70.0, "A", 0.2),  # background: no instance near
    Detection("v1", 20.0, 30.0, "B", 0.95),  # true positive: B [20, 30]
    Detection("v2", 0.0, 5.0, "B", 0.1),  # background: a video without ground truth
]
EXPECTED_OUTCOMES = [
    "true_positive",
    "double_detection",
    "wrong_label",
    "localization",
    "localization",
    "confusion",
    "true_positive",
    "background",
    "true_positive",
    "background",
]
# Class A's ranking is TP, 5 FP, TP, FP over 2 instances: AP = 1/2 × 1 + 1/2 × 2/7 = 9/14.
# Class B's is TP, FP over 2 instances: AP = 1/2. mAP = (9/14 + 1/2) / 2 = 4/7.
HAND_MAP = 4 / 7
# Without one of the FPs ranked between A's two TPs, A's second TP comes at precision 2/6
# (AP 2/3, +1/42 for A, +1/84 for the mean); without both localizations at 2/5 (AP 7/10,
# +2/35 for A, +1/35); the background errors rank below every TP and cost nothing.
HAND_GAINS = {
    "double_detection": 1 / 84,
    "wrong_label": 1 / 84,
    "localization": 1 / 35,
    "confusion": 1 / 84,
    "background": 0.0,
}


def test_each_detection_gets_its_type():
    found = classify_detections(HAND_GT, HAND_DETECTIONS, 0.5)
    assert [OUTCOMES[k] for k in found.outcome] == EXPECTED_OUTCOMES
    assert found.matched.tolist() == [0, -1, -1, -1, -1, -1, 2, -1, 1, -1]
    assert found.wrong_label_of.tolist() == [-1, -1, 1, -1, -1, -1, -1, -1, -1, -1]


def test_hand_case_counts_gains_and_json():
    result = diagnose(HAND_GT, HAND_DETECTIONS, 0.5).to_dict()
    assert result["iou"] == 0.5 and result["protocol"] == "activitynet"
    assert result["true_positives"] == 3 and result["false_negatives"] == 1
    assert result["false_positives"] == {
        "double_detection": 1,
        "wrong_label": 1,
        "localization": 2,
        "confusion": 1,
        "background": 2,
    }
    assert result["mAP"] == pytest.approx(HAND_MAP)
    assert result["mAP_gain"] == pytest.approx(HAND_GAINS)
    assert result["per_class"]["A"]["AP"] == pytest.approx(9 / 14)
    assert result["per_class"]["B"] == {
        "instances": 2,
        "true_positives": 1,
        "false_positives": dict.fromkeys(ERROR_TYPES, 0) | {"background": 1},
        "false_negatives": 1,
        "AP": 0.5,
    }
    assert result["wrong_labels"] == {"classes": ["A", "B"], "matrix": [[0, 0], [1, 0]]}
    assert result["ignored_detections"] == 0


def test_the_map_is_the_evaluators():
    diagnosis = diagnose(HAND_GT, HAND_DETECTIONS, 0.5)
    assert diagnosis.mean_ap == evaluate(HAND_GT, HAND_DETECTIONS, "activitynet", [0.5]).mean_ap[0]


def test_top_detections_count_each_class_up_to_a_multiple_of_its_instances():
    top = diagnose(HAND_GT, HAND_DETECTIONS, 0.5).to_dict()["top_detections"]
    assert [t["factor"] for t in top] == list(range(1, 11))
    # 1G: A's best 2 (TP, double), B's best 2 (TP, background).
    assert top[0]["detections"] == 4 and top[0]["true_positives"] == 2
    assert top[0]["false_positives"] == dict.fromkeys(ERROR_TYPES, 0) | {
        "double_detection": 1,
        "background": 1,
    }
    # 2G: A's best 4 add the wrong label and a localization.
    assert top[1]["detections"] == 6 and top[1]["false_positives"]["wrong_label"] == 1
    # 4G and beyond: every detection.
    assert all(t["detections"] == 10 and t["true_positives"] == 3 for t in top[3:])


def test_a_higher_threshold_turns_a_double_detection_into_a_localization():
    found = classify_detections(HAND_GT, HAND_DETECTIONS, 0.95)
    # At 0.95, the tIoU-0.9 duplicate is a localization error and A [40, 50] still matches.
    assert OUTCOMES[found.outcome[1]] == "localization"
    assert OUTCOMES[found.outcome[6]] == "true_positive"


def test_missed_instances_by_length_and_by_instances_per_video():
    lengths = (3.0, 3.5, 6.0, 12.0, 18.0, 18.5, 1.0)  # right-closed: 3 is XS, 18 is L
    instances = [Instance("long", 100.0 * k, 100.0 * k + s, "A") for k, s in enumerate(lengths)]
    instances.append(Instance("single", 0.0, 1.0, "A"))
    gt = GroundTruth(classes=("A",), instances=tuple(instances))
    found = [Detection(i.video, i.start_s, i.end_s, "A", 0.5) for i in instances[:2]]
    result = diagnose(gt, found, 0.5).to_dict()
    assert result["missed_by_length"] == {
        "XS": {"instances": 3, "missed": 2},
        "S": {"instances": 2, "missed": 1},
        "M": {"instances": 1, "missed": 1},
        "L": {"instances": 1, "missed": 1},
        "XL": {"instances": 1, "missed": 1},
    }
    assert result["missed_by_instances_per_video"] == {
        "1": {"instances": 1, "missed": 1},
        "7": {"instances": 7, "missed": 5},
    }


def test_detections_of_classes_without_ground_truth_are_ignored_as_the_evaluator_does():
    gt = GroundTruth(classes=("A", "C"), instances=(Instance("v", 0.0, 10.0, "A"),))
    found = [Detection("v", 0.0, 10.0, "C", 0.9), Detection("v", 0.0, 10.0, "A", 0.5)]
    result = diagnose(gt, found, 0.5).to_dict()
    assert result["ignored_detections"] == 1 and result["detections"] == 1
    assert result["true_positives"] == 1 and result["mAP"] == 1.0


def test_no_detections_and_a_bad_threshold():
    result = diagnose(HAND_GT, [], 0.5).to_dict()
    assert result["mAP"] == 0.0 and result["false_negatives"] == 4
    assert result["mAP_gain"] == dict.fromkeys(ERROR_TYPES, 0.0)
    with pytest.raises(ScnnError, match="IoU must be in"):
        diagnose(HAND_GT, HAND_DETECTIONS, 0.0)


def test_pictures_are_figures():
    diagnosis = diagnose(HAND_GT, HAND_DETECTIONS, 0.5)
    for plot in (plot_false_positives, plot_false_negatives, plot_wrong_labels):
        figure = plot(diagnosis)
        assert figure.axes and figure.canvas is not None


def test_cli_diagnose_writes_json_and_pictures(tmp_path, capsys):
    gt_path, pred_path, out = tmp_path / "gt.csv", tmp_path / "pred.json", tmp_path / "d"
    write_ground_truth(gt_path, HAND_GT)
    write_detections(pred_path, HAND_DETECTIONS, HAND_GT.classes)
    code = main(["diagnose", "--gt", str(gt_path), "--pred", str(pred_path), "-o", str(out)])
    assert code == 0
    result = json.loads((out / "diagnosis.json").read_text())
    assert result["false_positives"]["localization"] == 2 and result["iou"] == 0.5
    assert result["mAP"] == pytest.approx(HAND_MAP)
    for name in ("false_positives", "false_negatives", "wrong_labels"):
        assert (out / f"{name}.png").read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "localization" in printed and "mAP gain if removed" in printed
    assert sorted(p.name for p in out.iterdir()) == [  # no temporary files left behind
        "diagnosis.json",
        "false_negatives.png",
        "false_positives.png",
        "wrong_labels.png",
    ]


def test_cli_diagnose_bad_threshold_is_one_line(tmp_path, capsys):
    gt_path, pred_path = tmp_path / "gt.csv", tmp_path / "pred.csv"
    write_ground_truth(gt_path, HAND_GT)
    write_detections(pred_path, HAND_DETECTIONS)
    args = ["diagnose", "--gt", str(gt_path), "--pred", str(pred_path), "-o", str(tmp_path / "d")]
    assert main([*args, "--iou", "1.5"]) == 1
    assert capsys.readouterr().err == "scnn: error: diagnosis IoU must be in (0, 1], got 1.5\n"


def test_html_report_index_shows_the_diagnosis(tmp_path):
    index = write_html_report(tmp_path / "r", HAND_DETECTIONS, gt=HAND_GT)
    text = index.read_text()
    assert "Error diagnosis at tIoU 0.5" in text
    assert '<tr><th scope="row">localization</th><td>2</td><td>+0.029</td></tr>' in text
    assert 'src="diagnosis/false_positives.png"' in text
    saved = json.loads((tmp_path / "r" / "diagnosis" / "diagnosis.json").read_text())
    assert saved["true_positives"] == 3
    no_truth = write_html_report(tmp_path / "n", HAND_DETECTIONS).read_text()
    assert "Error diagnosis" not in no_truth and not (tmp_path / "n" / "diagnosis").exists()


def test_hand_gains_are_what_removing_the_detections_gives():
    """The expected gains, computed the long way: evaluate without those detections."""
    found = classify_detections(HAND_GT, HAND_DETECTIONS, 0.5)
    for name, gain in HAND_GAINS.items():
        kept = [
            d for d, k in zip(HAND_DETECTIONS, found.outcome, strict=True) if OUTCOMES[k] != name
        ]
        removed = evaluate(HAND_GT, kept, "activitynet", [0.5]).mean_ap[0]
        assert removed - HAND_MAP == pytest.approx(gain)
        assert np.isfinite(removed)
