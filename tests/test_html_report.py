"""Tests for the html_report package: the static HTML report and its playable videos."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pytest
from tiny import random_model
from videos import numbered_frames, read_numbers, write_video

from scnn import cli, demo
from scnn.demo import DemoResult
from scnn.errors import ScnnError
from scnn.evaluate import evaluate
from scnn.formats import load_detections, write_detections, write_ground_truth
from scnn.html_report import write_html_report
from scnn.html_report.videos import is_browser_playable, reencode, reencoded_size
from scnn.records import Detection, GroundTruth, Instance
from scnn.synth import SynthConfig, generate
from scnn.video import probe, read_frames

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _gt() -> GroundTruth:
    instances = (
        Instance("a", 1.0, 3.0, "Jump"),
        Instance("a", 5.0, 6.0, "Jump"),
        Instance("a", 2.0, 4.0, "Run"),
        Instance("b", 0.5, 1.5, "Run"),
    )
    return GroundTruth(("Jump", "Run"), instances, videos=("a", "b"), durations_s={"a": 8, "b": 2})


def _detections() -> list[Detection]:
    return [
        Detection("a", 1.0, 3.0, "Jump", 0.9),  # IoU 1 with Jump 1-3: TP
        Detection("a", 1.5, 3.0, "Jump", 0.8),  # same instance, already taken: FP
        Detection("a", 5.0, 7.0, "Jump", 0.4),  # IoU 1/2 with Jump 5-6: TP at 0.5
        Detection("a", 2.0, 4.0, "Jump", 0.3),  # the Run instance's place, wrong class: FP
        Detection("b", 0.5, 1.5, "Run", 0.7),  # TP
    ]


def test_reencoded_size_is_even_and_modest():
    assert reencoded_size(171, 128) == (172, 128)
    assert reencoded_size(65, 48) == (64, 48)  # 32.5 rounds to the even 32
    assert reencoded_size(1920, 1080) == (640, 360)


def test_playable_formats(tmp_path):
    frames = numbered_frames(10, 64, 48)
    assert is_browser_playable(write_video(tmp_path / "ok.mp4", frames))
    assert is_browser_playable(write_video(tmp_path / "ok.webm", frames, codec="libvpx-vp9"))
    odd = numbered_frames(10, 65, 48)
    assert not is_browser_playable(write_video(tmp_path / "odd.mp4", odd, pix_fmt="yuv444p"))
    assert not is_browser_playable(write_video(tmp_path / "mj.avi", frames, codec="mjpeg"))
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(ScnnError, match="broken.mp4"):
        is_browser_playable(broken)


def test_reencode_keeps_every_frame_at_its_time(tmp_path):
    source = write_video(
        tmp_path / "odd.mp4", numbered_frames(50, 65, 48), rate=25, pix_fmt="yuv444p"
    )
    target = tmp_path / "out" / "odd.mp4"
    reencode(source, target)
    with av.open(str(target)) as container:
        context = container.streams.video[0].codec_context
        assert (context.name, context.format.name) == ("h264", "yuv420p")
        assert (context.width, context.height) == (64, 48)
        assert not container.streams.audio
    assert is_browser_playable(target)
    assert probe(target).duration_s == pytest.approx(2.0, abs=0.05)
    np.testing.assert_array_equal(read_numbers(read_frames(target, size=(64, 48))), range(50))


def _segments(page: str) -> list[str]:
    return re.findall(r"<button [^>]*>", page)


def test_html_report_pages_metrics_and_videos(tmp_path):
    video = write_video(tmp_path / "a.mp4", numbered_frames(200, 65, 48), pix_fmt="yuv444p")
    index = write_html_report(
        tmp_path / "report", _detections(), gt=_gt(), videos={"a": video}, iou_threshold=0.5
    )
    report = tmp_path / "report"
    assert index == report / "index.html"
    text = index.read_text()
    assert 'href="a.html"' in text and 'href="b.html"' in text
    for protocol in ("thumos14", "scnn", "activitynet"):
        assert f"{protocol} protocol" in text
    assert (report / "precision_recall.png").read_bytes().startswith(PNG_SIGNATURE)
    # a's row: 3 instances, 4 detections, 2 true positives at 0.5
    assert "<td>8.0</td><td>3</td><td>4</td><td>2</td>" in text
    page = (report / "a.html").read_text()
    assert 'src="media/a.mp4"' in page
    assert is_browser_playable(report / "media" / "a.mp4")  # re-encoded: yuv444p, odd width
    detections = [s for s in _segments(page) if "seg det" in s]
    truth = [s for s in _segments(page) if "seg gt" in s]
    assert len(detections) == 4 and len(truth) == 3
    assert sum(" tp" in s for s in detections) == 2 and sum(" fp" in s for s in detections) == 2
    first = next(s for s in detections if 'data-score="0.900000"' in s)
    assert 'aria-label="detection Jump, 1.00 s to 3.00 s, score 0.900, true positive' in first
    assert 'data-start="1.000"' in first and "left:12.500%;width:25.000%" in first
    assert "b.html" not in page and "http" not in page  # nothing fetched from elsewhere
    b_page = (report / "b.html").read_text()
    assert "<video" not in b_page and "no video file given" in b_page


def test_html_report_marks_what_the_evaluator_counts(tmp_path):
    """[1, 3] is as close to [0, 2] as to [2, 4] (IoU 1/3): the evaluator gives it the later
    instance, so [0, 2] still finds its own and both detections are true positives."""
    instances = (Instance("v", 0.0, 2.0, "A"), Instance("v", 2.0, 4.0, "A"))
    gt = GroundTruth(("A",), instances, videos=("v",), durations_s={"v": 4})
    detections = [Detection("v", 1.0, 3.0, "A", 0.9), Detection("v", 0.0, 2.0, "A", 0.8)]
    assert evaluate(gt, detections, "activitynet", [0.3]).average_precision[0, 0] == 1.0
    index = write_html_report(tmp_path / "r", detections, gt=gt, iou_threshold=0.3)
    marked = [s for s in _segments((index.parent / "v.html").read_text()) if "seg det" in s]
    assert [" tp" in s for s in marked] == [True, True]
    assert "<td>4.0</td><td>2</td><td>2</td><td>2</td>" in index.read_text()


def test_html_report_without_ground_truth(tmp_path):
    detections = [Detection("v", 0.0, 2.0, "A", 0.5), Detection("v", 3.0, 4.0, "B", 0.1)]
    index = write_html_report(tmp_path / "r", detections)
    assert "No ground truth given" in index.read_text()
    assert not (tmp_path / "r" / "precision_recall.png").exists()
    page = (tmp_path / "r" / "v.html").read_text()
    segments = _segments(page)
    assert len(segments) == 2 and not any(" tp" in s or " fp" in s for s in segments)
    assert 'data-duration="4.000"' in page  # the last segment's end without a video


def test_html_report_unplayable_file_is_reported_not_fatal(tmp_path):
    broken = tmp_path / "v.mp4"
    broken.write_bytes(b"no video here")
    index = write_html_report(
        tmp_path / "r", [Detection("v", 0.0, 1.0, "A", 0.5)], videos={"v": broken}
    )
    page = (index.parent / "v.html").read_text()
    assert "video unavailable" in page and "<video" not in page
    assert "Invalid data found when processing input" in page and "Errno" not in page


def test_html_report_file_names_are_safe_and_distinct(tmp_path):
    detections = [Detection(name, 0.0, 1.0, "A", 0.5) for name in ("x y", "x_y", "index")]
    text = write_html_report(tmp_path / "r", detections).read_text()
    assert {"x_y.html", "x_y_2.html", "index_2.html"} <= {
        p.name for p in (tmp_path / "r").iterdir()
    }
    assert 'href="x_y.html">x y</a>' in text


def test_cli_report(tmp_path, capsys):
    write_ground_truth(tmp_path / "gt.json", _gt())
    write_detections(tmp_path / "det.csv", _detections(), _gt().classes)
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a.mp4", numbered_frames(25, 64, 48))
    code = cli.main(
        [
            "report",
            str(tmp_path / "det.csv"),
            "--gt",
            str(tmp_path / "gt.json"),
            "--videos",
            str(videos),
            "-o",
            str(tmp_path / "r"),
            "--iou",
            "0.6",
        ]
    )
    assert code == cli.EXIT_OK
    assert "HTML report:" in capsys.readouterr().out
    page = (tmp_path / "r" / "a.html").read_text()
    assert 'src="media/a.mp4"' in page and "true positive at IoU 0.6" in page
    # at 0.6 the 5-7 s detection (IoU 1/2) is a false positive: 1 TP in video a
    assert (
        "<td>8.0</td><td>3</td><td>4</td><td>1</td>" in (tmp_path / "r" / "index.html").read_text()
    )
    assert (
        cli.main(
            [
                "report",
                str(tmp_path / "det.csv"),
                "--videos",
                str(tmp_path / "none"),
                "-o",
                str(tmp_path / "r2"),
            ]
        )
        == cli.EXIT_ERROR
    )
    assert "not a folder of videos" in capsys.readouterr().err


def test_cli_detect_report(tmp_path):
    tint = np.uint8([40, 90, 20])  # a coloured video, like test_detect.py's
    frames = numbered_frames(200, 64, 48) // 2 + tint
    video = write_video(tmp_path / "clip.mp4", frames)
    args = ["detect", str(video), "--model", str(random_model(tmp_path / "model"))]
    args += ["-o", str(tmp_path / "det.json"), "--proposal-threshold", "0", "--quiet"]
    assert cli.main([*args, "--report", str(tmp_path / "r")]) == cli.EXIT_OK
    detections = load_detections(tmp_path / "det.json")
    page = (tmp_path / "r" / "clip.html").read_text()
    assert detections and len(re.findall(r'class="seg det"', page)) == len(detections)
    assert 'src="media/clip.mp4"' in page  # H.264 4:2:0 at an even size: copied as it is
    assert (tmp_path / "r" / "media" / "clip.mp4").read_bytes() == video.read_bytes()


def test_cli_demo_report(tmp_path, monkeypatch, capsys):
    """--report on demo turns the demo folder's files into the HTML report."""

    def fake_run_demo(out, **_):
        gt = generate(
            out / "test_data",
            SynthConfig(2, 0, 0, 1, (8.0, 9.0), (1.0, 2.0), seed=3),
            quiet=True,
        )
        found = [Detection(i.video, i.start_s, i.end_s, i.label, 0.8) for i in gt.instances]
        write_detections(out / "detections.json", found, gt.classes)
        return DemoResult(out, Path("model"), 1, len(found), {}, {})

    monkeypatch.setattr(demo, "run_demo", fake_run_demo)
    code = cli.main(["demo", "-o", str(tmp_path / "d"), "--report", str(tmp_path / "html")])
    assert code == cli.EXIT_OK
    page = (tmp_path / "html" / "synth_test_0001.html").read_text()
    assert page.count('class="seg det tp"') == page.count('class="seg gt"') > 0
    assert 'src="media/synth_test_0001.mp4"' in page
    assert "HTML report:" in capsys.readouterr().out
