"""THUMOS14: the real test and validation folders, submissions as the kit reads them,
malformed folders."""

import pytest
from conftest import THUMOS14_CLASSES, THUMOS14_TEST, THUMOS14_VAL
from formats_examples import DETECTIONS, GT

from scnn.errors import AnnotationError
from scnn.formats import (
    load_detections,
    load_ground_truth,
    read_class_table,
    write_detections,
    write_ground_truth,
)
from scnn.records import Detection, Instance
from scnn.video import VIDEO_SUFFIXES


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


def test_thumos14_folder_writes_one_file_per_class_and_subset(tmp_path):
    write_ground_truth(tmp_path / "gt", GT)
    names = sorted(p.name for p in (tmp_path / "gt").iterdir())
    assert names == ["Ambiguous_val.txt", "Diving_val.txt", "HighJump_val.txt"]
    assert (tmp_path / "gt" / "Diving_val.txt").read_text() == (
        "video_a 1.5 4.25\nvideo_b 0.0 3.1\n"
    )


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
