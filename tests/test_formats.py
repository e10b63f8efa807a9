"""The entry points of scnn.formats: every format by its extension, round trips, class tables."""

import json
import re

import numpy as np
import pytest
from conftest import THUMOS14_CLASSES
from formats_examples import DETECTIONS, GT

from scnn.errors import AnnotationError
from scnn.formats import (
    SUBTITLE_FORMATS,
    WRITERS,
    get_writer,
    load_detections,
    load_ground_truth,
    read_class_table,
    write_detections,
    write_ground_truth,
)
from scnn.records import Instance


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


@pytest.mark.parametrize("name", ["det.json", "det.csv"])
def test_detections_round_trip_exactly(tmp_path, name):
    write_detections(tmp_path / name, DETECTIONS)
    assert load_detections(tmp_path / name, classes=GT.classes) == DETECTIONS


def test_writers_by_extension(tmp_path):
    assert get_writer(tmp_path / "OUT.SRT") is WRITERS[".srt"]
    assert set(SUBTITLE_FORMATS) <= set(WRITERS)
    with pytest.raises(AnnotationError, match=r"out.xml: unknown output format \(use .txt"):
        write_detections(tmp_path / "out.xml", DETECTIONS)
    with pytest.raises(AnnotationError, match=r"gt.yaml: unknown ground-truth format"):
        write_ground_truth(tmp_path / "gt.yaml", GT)


# ---------------------------------------------------------------- broken and hostile files


def test_bom_and_crlf_are_read_like_plain_files(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_bytes("\ufeffvideo,start,end,label\r\nv1,1.5,3.0,jump\r\n".encode())
    gt = load_ground_truth(path)
    assert gt.instances == (Instance("v1", 1.5, 3.0, "jump"),)


@pytest.mark.parametrize(
    ("row", "words", "line"),
    [
        ("v1,1.5,3.0", "expected 4 columns, got 3", 3),
        ("v1,soon,3.0,jump", "start is not a number: 'soon'", 3),
        ("v1,nan,3.0,jump", "start is not finite", 3),
        ("v1,1.0,inf,jump", "end is not finite", 3),
        ("v1,-2.0,3.0,jump", "negative start time -2.0", 3),
        ("v1,5.0,3.0,jump", "start 5.0 is not before end 3.0", 3),
        ("v1,1.0,3.0,swim", "unknown class 'swim' in 'v1'", None),
    ],
)
def test_bad_ground_truth_rows_name_file_and_line(tmp_path, row, words, line):
    path = tmp_path / "gt.csv"
    path.write_text(f"video,start,end,label\nv0,0.5,1.0,jump\n{row}\n")
    with pytest.raises(AnnotationError, match=re.escape(words)) as caught:
        load_ground_truth(path, classes=("jump", "run"))
    assert caught.value.path == str(path) and caught.value.line == line


def test_duplicates_and_segments_past_the_end_are_kept_and_counted(tmp_path, caplog):
    path = tmp_path / "gt.json"
    jump = {"segment": [1.0, 2.0], "label": "jump"}
    late = {"segment": [8.0, 12.5], "label": "jump"}  # the video lasts 10 s
    database = {"v1": {"subset": "test", "duration": 10.0, "annotations": [jump, jump, late]}}
    path.write_text(json.dumps({"database": database}))
    with caplog.at_level("WARNING"):
        gt = load_ground_truth(path)
    assert len(gt.instances) == 3
    assert f"{path}: kept 1 duplicate instances" in caplog.text
    assert f"{path}: kept 1 instances that end after their video's duration" in caplog.text


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"database": {"v1": {"annotations": [{"label": "jump"}]}}}, "'segment' must be"),
        ({"database": {"v1": {"annotations": [{"segment": [1, 2]}]}}}, "'label' must be"),
        ({"database": {"v1": {"annotations": {"segment": [1, 2]}}}}, "expected a list"),
        ({"database": ["v1"]}, "no 'database' object"),
        ({"database": {"v1": {"annotations": [{"segment": ["a", 2], "label": "x"}]}}}, "start"),
    ],
)
def test_json_with_missing_keys_or_wrong_types(tmp_path, document, words):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(document))
    with pytest.raises(AnnotationError, match=words) as caught:
        load_ground_truth(path)
    assert caught.value.path == str(path)


def test_empty_files(tmp_path):
    for name in ("det.txt", "det.csv"):
        (tmp_path / name).touch()
        assert load_detections(tmp_path / name) == []
    (tmp_path / "gt.json").touch()
    with pytest.raises(AnnotationError, match="no 'database' object"):
        load_ground_truth(tmp_path / "gt.json")


def test_100_mb_files_fail_fast_with_one_line(tmp_path):
    size = 100 * 2**20
    one_field = tmp_path / "huge.csv"
    with open(one_field, "w") as handle:
        handle.write("video,start,end,label,score\nv1,1,2,jump,")
        handle.write("9" * size)
    with pytest.raises(AnnotationError, match="field larger than field limit") as caught:
        load_detections(one_field)
    assert caught.value.line == 2 and len(str(caught.value)) < 200
    binary = tmp_path / "huge.txt"
    binary.write_bytes(np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes())
    with pytest.raises(AnnotationError, match="not a UTF-8 text file"):
        load_detections(binary)
