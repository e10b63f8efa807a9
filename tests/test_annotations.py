"""Annotation formats: real THUMOS14 files, round trips, malformed input."""

import gzip

import numpy as np
import pytest
from conftest import ACTIVITYNET_EXAMPLE, THUMOS14, THUMOS14_CLASSES, THUMOS14_TEST, THUMOS14_VAL

from scnn.errors import AnnotationError
from scnn.formats import (
    load_detections,
    load_ground_truth,
    read_class_table,
    write_detections,
    write_ground_truth,
)
from scnn.formats.windows_csv import read_windows_csv, write_windows_csv
from scnn.records import Detection, GroundTruth, Instance, ScoredWindows
from scnn.video import VIDEO_SUFFIXES

GT = GroundTruth(
    classes=("Diving", "HighJump"),
    instances=(
        Instance("video_a", 1.5, 4.25, "Diving"),
        Instance("video_a", 10.0, 12.0, "HighJump"),
        Instance("video_b", 0.0, 3.1, "Diving"),
    ),
    ambiguous=(Instance("video_b", 5.0, 6.0, "Ambiguous"),),
    videos=("video_a", "video_b"),
    subsets={"video_a": "val", "video_b": "val"},
)
DETECTIONS = [
    Detection("video_a", 1.25, 4.0, "Diving", 0.912345678),
    Detection("video_b", 7.0, 9.5, "HighJump", 0.5),
]


def test_thumos14_test_set_counts():
    gt = load_ground_truth(THUMOS14_TEST)
    assert len(gt.instances) == 3358
    assert len(gt.classes) == 20
    assert len({i.video for i in gt.instances}) == 212
    assert len(gt.ambiguous) == 99
    assert gt.classes == tuple(read_class_table(THUMOS14_CLASSES).values())


def test_thumos14_val_set_counts():
    gt = load_ground_truth(THUMOS14_VAL)
    assert len(gt.instances) == 3007
    assert len({i.video for i in gt.instances}) == 200
    assert set(gt.subsets.values()) == {"val"}


def test_class_table_columns():
    by_id = read_class_table(THUMOS14_CLASSES, id_column="thumos14_id")
    assert by_id[7] == "BaseballPitch" and by_id[97] == "VolleyballSpiking"
    with pytest.raises(AnnotationError, match="no column 'nope'"):
        read_class_table(THUMOS14_CLASSES, id_column="nope")


@pytest.mark.parametrize("name", ["folder", "gt.json", "gt.csv"])
def test_ground_truth_round_trip(tmp_path, name):
    write_ground_truth(tmp_path / name, GT)
    back = load_ground_truth(tmp_path / name)
    assert back.classes == GT.classes
    assert set(back.instances) == set(GT.instances)  # a folder groups them by class
    assert back.ambiguous == GT.ambiguous


def test_thumos14_folder_writes_one_file_per_class_and_subset(tmp_path):
    write_ground_truth(tmp_path / "gt", GT)
    names = sorted(p.name for p in (tmp_path / "gt").iterdir())
    assert names == ["Ambiguous_val.txt", "Diving_val.txt", "HighJump_val.txt"]
    assert (tmp_path / "gt" / "Diving_val.txt").read_text() == (
        "video_a 1.5 4.25\nvideo_b 0.0 3.1\n"
    )


def test_activitynet_subset_filter():
    gt = load_ground_truth(ACTIVITYNET_EXAMPLE / "synthetic_gt.json", subset="testing")
    assert gt.classes == ("ClassA", "ClassB")
    assert len(gt.instances) == 6 and gt.videos == ("v1", "v2", "v3")
    assert gt.durations_s["v2"] == 120.0
    empty = load_ground_truth(ACTIVITYNET_EXAMPLE / "synthetic_gt.json", subset="validation")
    assert empty.instances == ()


@pytest.mark.parametrize("name", ["det.json", "det.csv"])
def test_detections_round_trip_exactly(tmp_path, name):
    write_detections(tmp_path / name, DETECTIONS)
    assert load_detections(tmp_path / name, classes=GT.classes) == DETECTIONS


def test_thumos14_submission_rounds_as_the_authors_files(tmp_path):
    write_detections(tmp_path / "det.txt", DETECTIONS, classes=GT.classes)
    assert (tmp_path / "det.txt").read_text() == (
        "video_a 1.2 4.0 1 0.91235\nvideo_b 7.0 9.5 2 0.5\n"
    )
    back = load_detections(tmp_path / "det.txt", classes=GT.classes)
    assert back[0] == Detection("video_a", 1.2, 4.0, "Diving", 0.91235)


def test_thumos14_submission_as_the_kit_reads_it(tmp_path, caplog):
    table = {7: "Diving", 40: "HighJump"}
    (tmp_path / "run.txt").write_text(
        "video_a.mpeg\t12.5 3.0 7 0.5\n\nvideo_b  -1.0\t2.0 40\t0.25\nvideo_b 1 2 99 0.1\n"
    )
    detections = load_detections(tmp_path / "run.txt", class_table=table)
    assert detections == [
        Detection("video_a", 12.5, 3.0, "Diving", 0.5),
        Detection("video_b", -1.0, 2.0, "HighJump", 0.25),
    ]
    assert "skipped 1 rows" in caplog.text
    assert "1 rows with start > end and 1 with a negative time" in caplog.text


def test_submitted_video_names_lose_any_video_suffix(tmp_path):
    lines = [f"v{n}{suffix} 1 2 Diving 0.5\n" for n, suffix in enumerate(VIDEO_SUFFIXES)]
    (tmp_path / "run.txt").write_text("".join(lines))
    videos = [d.video for d in load_detections(tmp_path / "run.txt", classes=GT.classes)]
    assert videos == [f"v{n}" for n in range(len(VIDEO_SUFFIXES))]


def test_class_names_and_indices_in_submissions(tmp_path):
    (tmp_path / "run.txt").write_text("v 1 2 HighJump 0.5\nv 1 2 1 0.4\n")
    labels = [d.label for d in load_detections(tmp_path / "run.txt", classes=GT.classes)]
    assert labels == ["HighJump", "Diving"]
    (tmp_path / "bad.txt").write_text("v 1 2 Swimming 0.5\n")
    with pytest.raises(AnnotationError, match=r"bad.txt:1: unknown class 'Swimming'"):
        load_detections(tmp_path / "bad.txt", classes=GT.classes)


def test_empty_prediction_file_gives_no_detections(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    assert load_detections(tmp_path / "empty.txt") == []


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("video_a 1.0", "expected 3 columns"),
        ("video_a 1.0 2.0 3.0", "expected 3 columns"),
        ("video_a one 2.0", "start is not a number"),
        ("video_a 1.0 nan", "end is not finite"),
        ("video_a inf 2.0", "start is not finite"),
        ("video_a -1.0 2.0", "negative start time"),
        ("video_a 2.0 2.0", "is not before end"),
        ("video_a 3.0 2.0", "is not before end"),
    ],
)
def test_malformed_thumos14_ground_truth_names_file_and_line(tmp_path, line, message):
    (tmp_path / "Diving_val.txt").write_text(f"video_a 0.5 1.0\n{line}\n")
    with pytest.raises(AnnotationError, match=message) as info:
        load_ground_truth(tmp_path)
    assert info.value.path == str(tmp_path / "Diving_val.txt") and info.value.line == 2


def test_malformed_csv_ground_truth(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("video,start,end,label\nv,1,2\n")
    with pytest.raises(AnnotationError, match=r"gt.csv:2: expected 4 columns"):
        load_ground_truth(path)
    path.write_text("video,start,end,label\nv,1,2,Swimming\n")
    with pytest.raises(AnnotationError, match="unknown class 'Swimming'"):
        load_ground_truth(path, classes=("Diving",))


def test_empty_bom_and_crlf_ground_truth(tmp_path):
    (tmp_path / "Diving_val.txt").write_bytes(b"\xef\xbb\xbfvideo_a 1.0 2.0\r\nvideo_b 3 4\r\n")
    (tmp_path / "HighJump_val.txt").write_bytes(b"")
    gt = load_ground_truth(tmp_path)
    assert gt.classes == ("Diving", "HighJump")
    assert gt.instances == (
        Instance("video_a", 1.0, 2.0, "Diving"),
        Instance("video_b", 3.0, 4.0, "Diving"),
    )


def test_folder_with_two_subsets_needs_a_choice(tmp_path):
    (tmp_path / "Diving_val.txt").write_text("v 1 2\n")
    (tmp_path / "Diving_test.txt").write_text("w 1 2\nw 3 4\n")
    with pytest.raises(AnnotationError, match="choose a subset"):
        load_ground_truth(tmp_path)
    assert len(load_ground_truth(tmp_path, subset="test").instances) == 2


def test_windows_csv_reads_the_authors_file():
    classes = tuple(read_class_table(THUMOS14_CLASSES).values())
    windows = read_windows_csv(THUMOS14 / "scnn_c3d_test_windows.csv.gz", classes)
    assert len(windows) == 79475
    assert windows.videos[0] == "video_test_0000004"
    assert (windows.window_frames[0], windows.start_frame[0], windows.end_frame[0]) == (16, 13, 28)
    assert windows.label_index[0] == 6 and windows.start_s[0] == 0.52
    assert set(np.unique(windows.window_frames)) <= {16, 32, 64, 128, 256, 512}


@pytest.mark.parametrize("name", ["w.csv", "w.csv.gz"])
def test_windows_csv_round_trip(tmp_path, name):
    windows = ScoredWindows(
        videos=np.array(["a", "b"]),
        window_frames=np.array([16, 32]),
        start_frame=np.array([1, 9]),
        end_frame=np.array([16, 40]),
        start_s=np.array([0.04, 0.36]),
        end_s=np.array([0.64, 1.6]),
        label_index=np.array([0, 2]),
        score=np.array([0.25, 0.987654321]),
        classes=("Diving", "HighJump"),
    )
    write_windows_csv(tmp_path / name, windows)
    back = read_windows_csv(tmp_path / name, windows.classes)
    for field in (
        "videos",
        "window_frames",
        "start_frame",
        "end_frame",
        "start_s",
        "end_s",
        "label_index",
        "score",
    ):
        np.testing.assert_array_equal(getattr(back, field), getattr(windows, field))
    if name.endswith(".gz"):
        assert gzip.decompress((tmp_path / name).read_bytes()).startswith(b"video,window_frames")


def test_windows_csv_accepts_class_names(tmp_path):
    (tmp_path / "w.csv").write_text(
        "video,window_frames,start_frame,end_frame,start_s,end_s,loc_class,loc_score\n"
        "a,16,1,16,0.04,0.64,HighJump,0.5\na,16,5,20,0.2,0.8,background,0.9\n"
        "a,16,9,24,0.36,0.96,3,0.9\n"
    )
    with pytest.raises(AnnotationError, match=r"w.csv:4: class index 3 not in 0..2"):
        read_windows_csv(tmp_path / "w.csv", ("Diving", "HighJump"))
    (tmp_path / "w.csv").write_text("\n".join((tmp_path / "w.csv").read_text().splitlines()[:3]))
    windows = read_windows_csv(tmp_path / "w.csv", ("Diving", "HighJump"))
    assert windows.label_index.tolist() == [2, 0]
