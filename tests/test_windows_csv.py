"""The windows CSV: the authors' file, round trips plain and gzip, class names; concatenation."""

import csv
import gzip

import numpy as np
import pytest
from conftest import THUMOS14, THUMOS14_CLASSES

from scnn.errors import AnnotationError
from scnn.formats import read_class_table
from scnn.formats.windows_csv import concat_windows, read_windows_csv, write_windows_csv
from scnn.records import ScoredWindows


def test_windows_csv_reads_the_authors_file():
    classes = tuple(read_class_table(THUMOS14_CLASSES).values())
    windows = read_windows_csv(THUMOS14 / "scnn_c3d_test_windows.csv.gz", classes)
    assert len(windows) == 79475
    assert windows.videos[0] == "video_test_0000004"
    assert (windows.window_frames[0], windows.start_frame[0], windows.end_frame[0]) == (16, 13, 28)
    assert windows.label_index[0] == 6 and windows.start_s[0] == 0.52
    assert windows.start_offset_s is None and windows.end_offset_s is None
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


def test_a_boundary_networks_offsets_round_trip_as_two_more_columns(tmp_path):
    windows = ScoredWindows(
        videos=np.array(["a", "a"]),
        window_frames=np.array([16, 32]),
        start_frame=np.array([1, 9]),
        end_frame=np.array([16, 40]),
        start_s=np.array([0.04, 0.36]),
        end_s=np.array([0.64, 1.6]),
        label_index=np.array([0, 1]),
        score=np.array([0.25, 0.75]),
        classes=("Diving",),
        start_offset_s=np.array([0.0, 0.123456789]),
        end_offset_s=np.array([0.0, -0.5]),
    )
    write_windows_csv(tmp_path / "w.csv", windows)
    with open(tmp_path / "w.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[1])[-2:] == ["start_offset_s", "end_offset_s"]
    assert [(float(r["start_offset_s"]), float(r["end_offset_s"])) for r in rows] == [
        (0.0, 0.0),
        (0.123456789, -0.5),
    ]
    back = read_windows_csv(tmp_path / "w.csv", windows.classes)
    np.testing.assert_array_equal(back.start_offset_s, windows.start_offset_s)
    np.testing.assert_array_equal(back.end_offset_s, windows.end_offset_s)
    np.testing.assert_array_equal(back.start_s, windows.start_s)
    both = concat_windows([back, read_windows_csv(tmp_path / "w.csv", ("Diving",))], ("Diving",))
    assert both.start_offset_s.tolist() == [0.0, 0.123456789] * 2
    (tmp_path / "w.csv").write_text(
        (tmp_path / "w.csv").read_text().replace("start_offset_s,end_offset_s", "start_offset_s")
    )
    with pytest.raises(AnnotationError, match=r"w.csv:1: header must be video,.*start_offset_s"):
        read_windows_csv(tmp_path / "w.csv", windows.classes)


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


def test_concat_windows_keeps_the_rows_in_order():
    def one(video: str, start_frame: int) -> ScoredWindows:
        return ScoredWindows(
            videos=np.array([video]),
            window_frames=np.array([16]),
            start_frame=np.array([start_frame]),
            end_frame=np.array([start_frame + 15]),
            start_s=np.array([(start_frame - 1) / 25]),
            end_s=np.array([(start_frame + 15) / 25]),
            label_index=np.array([1]),
            score=np.array([0.5]),
            classes=("Diving",),
        )

    both = concat_windows([one("b", 9), one("a", 1)], ("Diving",))
    assert both.videos.tolist() == ["b", "a"] and both.start_frame.tolist() == [9, 1]
    assert len(concat_windows([], ("Diving",))) == 0
