"""Detections as WebVTT and SRT subtitles: known files, one video per file."""

import pytest

from scnn.errors import AnnotationError
from scnn.formats import write_detections
from scnn.records import Detection

DETECTIONS = [
    Detection("v", 3723.456, 3725.0, "Diving", 0.912),
    Detection("v", 3.0, 4.0, "HighJump", 0.5),
    Detection("v", -0.2, 1.5, "HighJump", 0.125),
    Detection("v", 3.0, 5.0, "Diving", 0.75),
]


def test_webvtt_known_file(tmp_path):
    write_detections(tmp_path / "v.vtt", DETECTIONS)
    assert (tmp_path / "v.vtt").read_text() == (
        "WEBVTT\n\n"
        "1\n00:00:00.000 --> 00:00:01.500\nHighJump (0.12)\n\n"
        "2\n00:00:03.000 --> 00:00:05.000\nDiving (0.75)\n\n"
        "3\n00:00:03.000 --> 00:00:04.000\nHighJump (0.50)\n\n"
        "4\n01:02:03.456 --> 01:02:05.000\nDiving (0.91)\n"
    )


def test_srt_known_file(tmp_path):
    write_detections(tmp_path / "v.srt", DETECTIONS[:2])
    assert (tmp_path / "v.srt").read_text() == (
        "1\n00:00:03,000 --> 00:00:04,000\nHighJump (0.50)\n\n"
        "2\n01:02:03,456 --> 01:02:05,000\nDiving (0.91)\n"
    )


def test_a_subtitle_file_holds_one_video(tmp_path):
    two_videos = [*DETECTIONS, Detection("w", 1.0, 2.0, "Diving", 0.5)]
    with pytest.raises(AnnotationError, match=r"two.vtt: a subtitle file holds one video"):
        write_detections(tmp_path / "two.vtt", two_videos)
    assert not (tmp_path / "two.vtt").exists()
