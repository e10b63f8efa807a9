"""CSV ground truth and detections: malformed input, the file the writer makes."""

import pytest
from formats_examples import DETECTIONS, GT

from scnn.errors import AnnotationError
from scnn.formats import load_ground_truth, write_detections


def test_malformed_csv_ground_truth(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("video,start,end,label\nv,1,2\n")
    with pytest.raises(AnnotationError, match=r"gt.csv:2: expected 4 columns"):
        load_ground_truth(path)
    path.write_text("video,start,end,label\nv,1,2,Swimming\n")
    with pytest.raises(AnnotationError, match="unknown class 'Swimming'"):
        load_ground_truth(path, classes=("Diving",))


def test_detections_csv_known_file(tmp_path):
    write_detections(tmp_path / "det.csv", DETECTIONS, classes=GT.classes)
    assert (tmp_path / "det.csv").read_text() == (
        "video,start,end,label,score\n"
        "video_a,1.25,4.0,Diving,0.912345678\n"
        "video_b,7.0,9.5,HighJump,0.5\n"
    )
