"""The entry points of scnn.formats: every format by its extension, round trips, class tables."""

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
