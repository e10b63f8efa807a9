"""The three evaluation protocols: reference numbers on real files, hand-computed cases."""

import json

import numpy as np
import pytest
from conftest import ACTIVITYNET_EXAMPLE, THUMOS14, THUMOS14_CLASSES, THUMOS14_TEST, THUMOS14_VAL
from test_formats_mexaction2 import xgtf

from scnn.cli import main
from scnn.errors import ScnnError
from scnn.evaluate import evaluate, match_detections, precision_recall, proposal_recall
from scnn.formats import load_detections, load_ground_truth, read_class_table, write_detections
from scnn.formats.windows_csv import read_windows_csv
from scnn.postprocess import postprocess, window_length_prior
from scnn.records import Detection, GroundTruth, Instance

PAPER_MAP = [0.47719, 0.43535, 0.36276, 0.28702, 0.18970]
PAPER_AP_AT_05 = [
    0.1486, 0.2008, 0.0756, 0.2482, 0.2747, 0.1571, 0.1380, 0.1763, 0.1534, 0.1819,
    0.1914, 0.2000, 0.1817, 0.3482, 0.3211, 0.1210, 0.1925, 0.1935, 0.2444, 0.0458,
]  # fmt: skip
KIT_MAP = [
    0.43724453578605305, 0.24948741869962907, 0.14877237079386521, 0.087622912195897351,
    0.055809536011580098,
]  # fmt: skip


def test_paper_table_from_the_authors_windows(tmp_path):
    """windows CSV -> prior from val, NMS at IoU - 0.1 -> THUMOS14 .txt -> protocol scnn."""
    test = load_ground_truth(THUMOS14_TEST)
    val = load_ground_truth(THUMOS14_VAL)
    windows = read_windows_csv(THUMOS14 / "scnn_c3d_test_windows.csv.gz", test.classes)
    prior = window_length_prior(val.instances, test.classes)
    for iou, expected in zip((0.1, 0.2, 0.3, 0.4, 0.5), PAPER_MAP, strict=True):
        detections = postprocess(windows, nms_iou=round(iou - 0.1, 1), prior=prior)
        write_detections(tmp_path / "det.txt", detections, test.classes)
        submitted = load_detections(tmp_path / "det.txt", classes=test.classes)
        result = evaluate(test, submitted, "scnn", [iou])
        assert result.mean_ap[0] == pytest.approx(expected, abs=5e-4)
    np.testing.assert_allclose(result.average_precision[0], PAPER_AP_AT_05, atol=5e-5)


def test_the_res3d_table_from_the_authors_windows(tmp_path):
    """The authors' second release (Res3D-18): the same post-processing gives their table."""
    test = load_ground_truth(THUMOS14_TEST)
    val = load_ground_truth(THUMOS14_VAL)
    windows = read_windows_csv(THUMOS14 / "scnn_res3d_test_windows.csv.gz", test.classes)
    assert len(windows.start_frame) == 64116
    prior = window_length_prior(val.instances, test.classes)
    for iou, expected in ((0.3, 0.4064), (0.5, 0.2249)):
        detections = postprocess(windows, nms_iou=round(iou - 0.1, 1), prior=prior)
        write_detections(tmp_path / "det.txt", detections, test.classes)
        submitted = load_detections(tmp_path / "det.txt", classes=test.classes)
        assert evaluate(test, submitted, "scnn", [iou]).mean_ap[0] == pytest.approx(
            expected, abs=1e-4
        )


def test_official_kit_example():
    val = load_ground_truth(THUMOS14_VAL)
    table = read_class_table(THUMOS14_CLASSES, id_column="thumos14_id")
    run = load_detections(THUMOS14 / "official_kit_example" / "Run-2-det.txt", val.classes, table)
    result = evaluate(val, run, "thumos14")
    np.testing.assert_allclose(result.mean_ap, KIT_MAP, rtol=0, atol=1e-9)
    assert result.num_ground_truth == 3007


def test_activitynet_example():
    gt = load_ground_truth(ACTIVITYNET_EXAMPLE / "synthetic_gt.json", subset="testing")
    predictions = load_detections(ACTIVITYNET_EXAMPLE / "synthetic_pred.json", gt.classes)
    result = evaluate(gt, predictions, "activitynet", [0.5, 0.75])
    assert result.mean_ap.tolist() == pytest.approx(
        [0.306547619047619, 0.29761904761904756], abs=1e-12
    )
    assert result.average_precision[0, 0] == pytest.approx(103 / 168, abs=1e-12)
    assert result.average_precision[:, 1].tolist() == [0.0, 0.0]


# A small case: class A has two instances in v1; class B one, and no detections.
HAND_GT = GroundTruth(
    classes=("A", "B"),
    instances=(
        Instance("v1", 0.0, 10.0, "A"),
        Instance("v1", 20.0, 30.0, "A"),
        Instance("v1", 40.0, 50.0, "B"),
    ),
    ambiguous=(Instance("v1", 60.0, 70.0, "Ambiguous"),),
    videos=("v1",),
)
HAND_DETECTIONS = [
    Detection("v1", 0.0, 10.0, "A", 0.9),  # TP
    Detection("v1", 1.0, 10.0, "A", 0.8),  # second detection on one instance: FP
    Detection("v1", 60.0, 65.0, "A", 0.7),  # inside Ambiguous: ignored by THUMOS14 kits
    Detection("v2", 0.0, 10.0, "A", 0.6),  # video without ground truth: FP
    Detection("v1", 20.0, 25.0, "A", 0.5),  # IoU exactly 0.5 with instance 2
]


@pytest.mark.parametrize(
    ("protocol", "iou", "ap_a"),
    [
        # Ranked: TP FP FP FP (ambiguous one dropped); strict > 0.5 misses the last one.
        ("scnn", 0.5, 1 / 2),
        ("thumos14", 0.5, 6 / 11),  # precision 1 at recall levels 0..0.5, 0 above
        # At 0.4 the last one is a TP: precision 2/4 at recall 1.
        ("scnn", 0.4, (1 + 2 / 4) / 2),
        ("thumos14", 0.4, (6 + 5 * 0.5) / 11),
        # ActivityNet: IoU >= 0.5 matches; the ambiguous one is a FP: TP FP FP FP TP.
        ("activitynet", 0.5, 0.5 * 1 + 0.5 * 2 / 5),
    ],
)
def test_hand_computed_case(protocol, iou, ap_a):
    result = evaluate(HAND_GT, HAND_DETECTIONS, protocol, [iou])
    assert result.classes == ("A", "B")
    assert result.average_precision[0].tolist() == pytest.approx([ap_a, 0.0], abs=1e-12)
    assert result.mean_ap[0] == pytest.approx(ap_a / 2, abs=1e-12)


# Equal scores: a FP in v1 and a TP in v2 tie at 0.5.
TIE_GT = GroundTruth(
    classes=("A",),
    instances=(Instance("v1", 0.0, 10.0, "A"), Instance("v2", 0.0, 10.0, "A")),
)
TIE_DETECTIONS = [
    Detection("v1", 50.0, 60.0, "A", 0.5),  # FP
    Detection("v2", 0.0, 10.0, "A", 0.5),  # TP
    Detection("v1", 0.0, 10.0, "A", 0.4),  # TP
]


@pytest.mark.parametrize(
    ("protocol", "detections", "ap"),
    [
        ("thumos14", TIE_DETECTIONS, (6 + 5 * 2 / 3) / 11),  # TPs first: TP FP TP
        ("scnn", TIE_DETECTIONS, (1 / 2 + 2 / 3) / 2),  # video order: FP (v1) TP (v2) TP
        ("activitynet", TIE_DETECTIONS, 2 / 3),  # input order: FP TP TP
        ("activitynet", TIE_DETECTIONS[::-1], 0.5 * 1 + 0.5 * 2 / 3),  # input order: TP FP TP
    ],
)
def test_score_ties(protocol, detections, ap):
    result = evaluate(TIE_GT, detections, protocol, [0.5])
    assert result.mean_ap[0] == pytest.approx(ap, abs=1e-12)


def test_ground_truth_driven_versus_score_driven_matching():
    gt = GroundTruth(classes=("A",), instances=(Instance("v", 0.0, 10.0, "A"),))
    detections = [
        Detection("v", 0.0, 6.0, "A", 0.9),  # IoU 0.6
        Detection("v", 0.0, 10.0, "A", 0.8),  # IoU 1
    ]
    # The kits: the instance claims its best overlap (the lower score), the first is a FP.
    assert evaluate(gt, detections, "scnn", [0.5]).mean_ap[0] == pytest.approx(0.5)
    # ActivityNet: the higher score claims the instance first.
    assert evaluate(gt, detections, "activitynet", [0.5]).mean_ap[0] == pytest.approx(1.0)


def test_match_detections_names_the_instance_each_detection_took():
    instances = (
        Instance("a", 1.0, 3.0, "Jump"),
        Instance("a", 5.0, 6.0, "Jump"),
        Instance("a", 2.0, 4.0, "Run"),
        Instance("b", 0.5, 1.5, "Run"),
    )
    gt = GroundTruth(("Jump", "Run"), instances, videos=("a", "b"))
    detections = [
        Detection("a", 1.0, 3.0, "Jump", 0.9),  # IoU 1 with Jump 1-3
        Detection("a", 1.5, 3.0, "Jump", 0.8),  # same instance, already taken
        Detection("a", 5.0, 7.0, "Jump", 0.4),  # IoU 1/2 with Jump 5-6
        Detection("a", 2.0, 4.0, "Jump", 0.3),  # the Run instance's place, wrong class
        Detection("b", 0.5, 1.5, "Run", 0.7),
        Detection("b", 0.5, 1.5, "Walk", 0.7),  # a class without ground truth
    ]
    assert match_detections(gt, detections, 0.5).tolist() == [0, -1, 1, -1, 3, -1]
    # Just above IoU 1/2, the 5-7 detection no longer matches 5-6.
    assert match_detections(gt, detections, 0.51)[2] == -1


@pytest.mark.parametrize(("protocol", "instance"), [("activitynet", 1), ("scnn", 0)])
def test_match_detections_follows_the_protocol_on_equal_overlaps(protocol, instance):
    """[1, 3] overlaps [0, 2] and [2, 4] equally: ActivityNet gives it the later instance; in
    the kits the first instance claims it."""
    instances = (Instance("v", 0.0, 2.0, "A"), Instance("v", 2.0, 4.0, "A"))
    gt = GroundTruth(("A",), instances, videos=("v",))
    detections = [Detection("v", 1.0, 3.0, "A", 0.9)]
    assert match_detections(gt, detections, 0.3, protocol).tolist() == [instance]


def test_precision_recall_hand_computed():
    recall, precision = precision_recall([0.9, 0.3, 0.8, 0.4], [True, False, False, True], 4)
    # score order 0.9 (TP), 0.8 (FP), 0.4 (TP), 0.3 (FP)
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5])
    np.testing.assert_allclose(precision, [1.0, 0.5, 2 / 3, 0.5])
    with pytest.raises(ScnnError, match="at least one"):
        precision_recall([0.9], [False], 0)


def test_touching_segments_at_threshold_zero():
    gt = GroundTruth(classes=("A",), instances=(Instance("v", 0.0, 10.0, "A"),))
    touching = [Detection("v", 10.0, 20.0, "A", 0.9)]  # zero-length overlap, IoU 0
    assert evaluate(gt, touching, "scnn", [0.0]).mean_ap[0] == 0.0  # IoU > 0 fails
    assert evaluate(gt, touching, "activitynet", [0.0]).mean_ap[0] == 1.0  # IoU >= 0 passes


def test_reversed_segments_as_each_reference_reads_them():
    gt = GroundTruth(classes=("A",), instances=(Instance("v", 0.0, 10.0, "A"),))
    reversed_detection = [Detection("v", 10.0, 0.0, "A", 0.9)]
    assert evaluate(gt, reversed_detection, "thumos14", [0.5]).mean_ap[0] == pytest.approx(1.0)
    assert evaluate(gt, reversed_detection, "activitynet", [0.5]).mean_ap[0] == 0.0


def test_no_detections_scores_zero_and_bad_protocol_is_an_error():
    result = evaluate(HAND_GT, [], "thumos14")
    assert result.mean_ap.tolist() == [0.0] * 5
    with pytest.raises(ScnnError, match="unknown protocol 'voc'"):
        evaluate(HAND_GT, [], "voc")


def test_proposal_recall_at_average_numbers():
    proposals = [
        Detection("v1", 0.0, 10.0, "x", 0.9),
        Detection("v1", 20.0, 26.0, "x", 0.8),  # IoU 0.6 with instance 2
        Detection("v1", 50.0, 60.0, "x", 0.1),
    ]
    gt = GroundTruth(classes=("A",), instances=HAND_GT.instances[:2])
    result = proposal_recall(gt, proposals, average_numbers=(1, 3), iou_thresholds=(0.5, 0.7))
    assert result.proposals_per_video.tolist() == [1.0, 3.0]
    assert result.recall.tolist() == [[0.5, 1.0], [0.5, 0.5]]
    assert result.average_recall.tolist() == [0.5, 0.75]


def test_cli_evaluate_writes_json(tmp_path, capsys):
    gt_path, pred_path, out = tmp_path / "gt.csv", tmp_path / "pred.csv", tmp_path / "r.json"
    gt_path.write_text("video,start,end,label\nv1,0,10,A\nv1,20,30,A\nv1,40,50,B\n")
    write_detections(pred_path, HAND_DETECTIONS[:2])
    code = main(["evaluate", "--gt", str(gt_path), "--pred", str(pred_path),
                 "--protocol", "scnn", "--iou", "0.5", "--json", str(out)])  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    assert report["protocol"] == "scnn" and report["iou_thresholds"] == [0.5]
    assert report["per_class"] == {"A": [0.5], "B": [0.0]}
    assert report["mAP"] == [0.25] and report["average_mAP"] == 0.25
    assert (report["num_videos"], report["num_ground_truth"], report["num_detections"]) == (
        1, 3, 2,
    )  # fmt: skip
    assert "protocol scnn" in capsys.readouterr().out


def test_cli_evaluate_bad_and_empty_predictions(tmp_path, capsys):
    gt_path, pred_path = tmp_path / "gt.csv", tmp_path / "pred.txt"
    gt_path.write_text("video,start,end,label\nv1,0,10,A\n")
    pred_path.write_text("v1 0 10 Swimming 0.5\n")
    args = ["evaluate", "--gt", str(gt_path), "--pred", str(pred_path), "--protocol", "thumos14"]
    assert main(args) == 1
    assert "pred.txt:1: unknown class 'Swimming'" in capsys.readouterr().err
    pred_path.write_text("")
    assert main(args) == 0
    assert "mAP" in capsys.readouterr().out


def test_cli_postprocess_writes_a_submission(tmp_path, capsys):
    windows = tmp_path / "w.csv"
    windows.write_text(
        "video,window_frames,start_frame,end_frame,start_s,end_s,loc_class,loc_score\n"
        "a,16,1,16,0.04,0.64,2,0.5\na,16,5,20,0.2,0.8,2,0.9\na,16,9,24,0.36,0.96,0,0.9\n"
    )
    (tmp_path / "classes.csv").write_text("index,name\n1,A\n2,B\n")
    code = main(["postprocess", str(windows), "--classes", str(tmp_path / "classes.csv"),
                 "--nms", "0.4", "--out", str(tmp_path / "d.txt")])  # fmt: skip
    assert code == 0
    assert (tmp_path / "d.txt").read_text() == "a 0.2 0.8 2 0.9\n"


def test_cli_postprocess_votes_boundaries(tmp_path, capsys):
    windows = tmp_path / "w.csv"
    windows.write_text(
        "video,window_frames,start_frame,end_frame,start_s,end_s,loc_class,loc_score\n"
        "a,16,1,16,0.04,0.64,B,0.75\na,16,5,20,0.2,0.8,B,0.9\n"  # IoU 0.44 / 0.76 = 0.58
    )
    (tmp_path / "classes.csv").write_text("index,name\n1,A\n2,B\n")
    out = tmp_path / "d.csv"
    args = ["postprocess", str(windows), "--classes", str(tmp_path / "classes.csv"),
            "--nms", "0.4", "--out", str(out), "--vote-iou"]  # fmt: skip
    assert main([*args, "0.5"]) == 0
    (found,) = load_detections(out, classes=("A", "B"))
    # Weights: the log-odds of 0.75 and 0.9, log 3 and log 9 = 2 log 3.
    assert (found.start_s, found.end_s, found.score) == pytest.approx(
        ((0.04 + 2 * 0.2) / 3, (0.64 + 2 * 0.8) / 3, 0.9), abs=1e-5
    )
    assert main([*args, "0"]) == 0  # off: the window's own boundaries
    (found,) = load_detections(out, classes=("A", "B"))
    assert (found.start_s, found.end_s) == pytest.approx((0.2, 0.8), abs=1e-5)
    assert main([*args, "1.5"]) == 1
    assert "voting IoU must be in [0, 1] (0: off), got 1.5" in capsys.readouterr().err


def test_cli_paper_table_at_05_through_the_bundled_names(tmp_path):
    """The paper's mAP@0.5 with the class table and the prior's ground truth given by name."""
    windows = THUMOS14 / "scnn_c3d_test_windows.csv.gz"
    det, out = tmp_path / "d.txt", tmp_path / "r.json"
    postprocess_args = ["postprocess", str(windows), "--prior-from", "thumos14-val",
                        "--classes", "thumos14", "--nms", "0.4", "--out", str(det)]  # fmt: skip
    assert main(postprocess_args) == 0
    evaluate_args = ["evaluate", "--gt", str(THUMOS14_TEST), "--pred", str(det),
                     "--classes", "thumos14", "--protocol", "scnn", "--iou", "0.5",
                     "--json", str(out)]  # fmt: skip
    assert main(evaluate_args) == 0
    assert json.loads(out.read_text())["mAP"] == pytest.approx([PAPER_MAP[4]], abs=5e-4)


def test_cli_official_kit_example_against_the_bundled_val(tmp_path):
    run = THUMOS14 / "official_kit_example" / "Run-2-det.txt"
    args = ["evaluate", "--gt", "thumos14-val", "--pred", str(run), "--protocol", "thumos14",
            "--classes", "thumos14", "--class-ids", "thumos14_id",
            "--json", str(tmp_path / "r.json")]  # fmt: skip
    assert main(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    np.testing.assert_allclose(result["mAP"], KIT_MAP, rtol=0, atol=1e-9)


def test_cli_postprocess_prior_has_a_bin_per_window_length_of_the_file(tmp_path):
    # Lengths 32, 64, 128 frames: bins of 1.28, 2.56 and 5.12 s, each holding W/2..2W.
    (tmp_path / "gt.csv").write_text("video,start,end,label\nt,0,1.0,A\nt,0,8.0,B\n")
    windows = tmp_path / "w.csv"
    windows.write_text(
        "video,window_frames,start_frame,end_frame,start_s,end_s,loc_class,loc_score\n"
        "a,32,1,32,0.04,1.28,A,0.9\n"  # A: 1.0 s fits only the 32-frame bin
        "a,64,1001,1064,40.04,42.56,A,0.8\n"
        "a,128,2001,2128,80.04,85.12,B,0.7\n"  # B: 8.0 s fits only the 128-frame bin
        "a,32,3001,3032,120.04,121.28,B,0.6\n"
    )
    out = tmp_path / "d.csv"
    code = main(["postprocess", str(windows), "--prior-from", str(tmp_path / "gt.csv"),
                 "--nms", "0.4", "--out", str(out)])  # fmt: skip
    assert code == 0
    found = load_detections(out, classes=("A", "B"))
    assert [(d.start_s, d.label, d.score) for d in found] == [
        (0.04, "A", 0.9),
        (80.04, "B", 0.7),
        (40.04, "A", 0.0),
        (120.04, "B", 0.0),
    ]


def test_ground_truth_without_instances_is_an_error_not_a_nan(tmp_path, capsys):
    """A subset no file has, or a MEXaction2 file with no action, leaves nothing to score."""
    pred = tmp_path / "pred.txt"
    pred.write_text("")
    base = ["--quiet", "evaluate", "--pred", str(pred), "--protocol", "thumos14"]
    gt = str(ACTIVITYNET_EXAMPLE / "synthetic_gt.json")
    assert main([*base, "--gt", gt, "--subset", "nosuchsubset"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "no ground-truth instances in subset 'nosuchsubset': nothing to evaluate" in error
    empty = tmp_path / "empty.xgtf"
    empty.write_text(xgtf("videos/ina_a.mp4", '<content framespan="1:50" id="1" name="Shot"/>'))
    assert main([*base, "--gt", str(empty)]) == 1
    error = capsys.readouterr().err
    assert error == f"scnn: error: {empty}: no ground-truth instances: nothing to evaluate\n"
    argv = ["--quiet", "diagnose", "--gt", str(empty), "--pred", str(pred)]
    assert main([*argv, "-o", str(tmp_path / "diagnosis")]) == 1
    error = capsys.readouterr().err
    assert error == f"scnn: error: {empty}: no ground-truth instances: nothing to evaluate\n"
    assert not (tmp_path / "diagnosis").exists()
