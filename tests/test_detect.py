"""The streaming detector against a plain whole-video computation, outputs and batch runs."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny import MODEL_CLASSES as CLASSES
from tiny import MODEL_CLIP as CLIP
from tiny import MODEL_OPTIONS as OPTIONS
from tiny import random_model
from videos import numbered_frames, write_video

from scnn import cli
from scnn.clips import assemble_clips
from scnn.detect import Detector, detect_videos, write_results
from scnn.errors import ScnnError, VideoError
from scnn.formats import load_detections
from scnn.formats.windows_csv import read_windows_csv
from scnn.modelfile import save_model
from scnn.video import find_videos, read_frames
from scnn.windows import WindowConfig, window_grid


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return random_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """700 frames at 25 fps: three decode chunks, so 512-frame windows span chunk borders."""
    path = tmp_path_factory.mktemp("videos") / "clip one.mp4"
    rng = np.random.default_rng(0)
    frames = numbered_frames(700, 64, 48)
    frames = (frames // 2 + rng.integers(0, 128, (1, 1, 1, 3))).astype(np.uint8)
    write_video(path, frames, 25, "libx264")
    return path


def whole_video_scores(detector: Detector, path) -> tuple[np.ndarray, ...]:
    """Every window of the grid through both networks, from the fully decoded video."""
    frames = read_frames(path, size=CLIP.frame_size)
    grid = window_grid(len(frames))
    clips = assemble_clips(frames, grid.start_frame, grid.length_frames, CLIP, train=False)
    with torch.inference_mode():
        p_action = torch.softmax(detector.proposal(clips), 1)[:, 1]
        score, label = torch.softmax(detector.localization(clips), 1).max(1)
    return grid, p_action.numpy(), label.numpy(), score.numpy()


def test_streaming_equals_whole_video_computation(model_dir, video):
    detector = Detector.load(model_dir, batch_size=7, precision="fp32")
    grid, p_action, label, score = whole_video_scores(detector, video)
    threshold = float(np.median(p_action))
    windows = detector.with_settings(proposal_threshold=threshold).score_windows(video)
    kept = p_action >= threshold
    assert 0 < len(windows) == kept.sum() < len(grid)
    expected = sorted(
        zip(
            grid.length_frames[kept].tolist(),
            grid.start_frame[kept].tolist(),
            label[kept].tolist(),
            strict=True,
        )
    )
    got = sorted(
        zip(
            windows.window_frames.tolist(),
            windows.start_frame.tolist(),
            windows.label_index.tolist(),
            strict=True,
        )
    )
    assert got == expected
    keys = zip(grid.length_frames.tolist(), grid.start_frame.tolist(), strict=True)
    by_window = dict(zip(keys, score, strict=True))
    rows = zip(windows.window_frames, windows.start_frame, windows.score, strict=True)
    for length, start, value in rows:
        assert value == pytest.approx(by_window[(int(length), int(start))], abs=1e-5)
    assert np.allclose(windows.start_s, windows.start_frame / 25)
    assert set(windows.videos) == {"clip one"}


def test_every_grid_window_reaches_the_networks_at_threshold_zero(model_dir, video):
    windows = Detector.load(model_dir, proposal_threshold=0.0).score_windows(video)
    # L = 16..512, stride L/4, last frame <= 700: 172 + 84 + 40 + 18 + 7 + 2 windows
    assert len(windows) == len(window_grid(700)) == 323


def test_detections_are_sorted_and_suppressed(model_dir, video):
    detector = Detector.load(model_dir, proposal_threshold=0.0, nms_threshold=0.4)
    detections = detector(video)
    assert detections and all(d.label in CLASSES for d in detections)
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for label in CLASSES:
        segments = np.array([(d.start_s, d.end_s) for d in detections if d.label == label])
        for i in range(len(segments)):
            for j in range(i + 1, len(segments)):
                inter = min(segments[i, 1], segments[j, 1]) - max(segments[i, 0], segments[j, 0])
                union = np.ptp(segments[[i, j]])
                assert inter <= 0 or inter / union <= 0.4 + 1e-9


def test_top_k_and_min_score(model_dir, video):
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    assert len(detector.with_settings(top_k=3)(video)) == 3
    everything = detector(video)
    cut = everything[len(everything) // 2].score
    assert all(d.score >= cut for d in detector.with_settings(min_score=cut)(video))


def test_too_short_video_is_an_error(model_dir, tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, numbered_frames(10, 64, 48), 25, "libx264")
    with pytest.raises(VideoError, match="short.mp4.*shorter than the shortest window"):
        Detector.load(model_dir).score_windows(path)


@pytest.fixture(scope="module")
def model_32_to_128(tmp_path_factory):
    """A model whose windows are 32, 64 and 128 frames long, each length weighted differently."""
    prior = {32: np.full(3, 0.5), 64: np.full(3, 0.25), 128: np.full(3, 1.0)}
    path = tmp_path_factory.mktemp("model_32_to_128")
    return random_model(path, windows=WindowConfig((32, 64, 128)), prior=prior)


def test_prior_weights_each_window_by_the_models_own_lengths(model_32_to_128, video):
    detector = Detector.load(model_32_to_128, proposal_threshold=0.0, nms_threshold=1.0)
    windows = detector.score_windows(video)
    assert set(windows.window_frames.tolist()) == {32, 64, 128}
    weighted = {(d.start_s, d.end_s, d.label): d.score for d in detector.detections(windows)}
    plain = detector.with_settings(use_prior=False).detections(windows)
    assert len(plain) == len(weighted) == int((windows.label_index > 0).sum())
    weight = {32: 0.5, 64: 0.25, 128: 1.0}
    for d in plain:
        length = round((d.end_s - d.start_s) * 25) + 1
        assert weighted[(d.start_s, d.end_s, d.label)] == pytest.approx(d.score * weight[length])


def test_video_shorter_than_the_models_shortest_window_is_an_error(model_32_to_128, tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, numbered_frames(20, 64, 48), 25, "libx264")
    with pytest.raises(VideoError, match="short.mp4.*shorter than the shortest window .32"):
        Detector.load(model_32_to_128).score_windows(path)


def test_batch_goes_past_bad_files_and_writes_every_format(model_dir, video, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.mp4").write_bytes(video.read_bytes())
    (folder / "broken.mp4").write_text("not a video")
    (folder / "notes.txt").write_text("ignored: not a video suffix")
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    paths = find_videos([folder])
    assert [p.name for p in paths] == ["broken.mp4", "good.mp4"]
    result = detect_videos(detector, paths, quiet=True)
    assert list(result.detections) == ["good"]
    assert list(result.failures) == [str(folder / "broken.mp4")]
    for suffix in (".json", ".csv", ".txt"):
        write_results(result, tmp_path / f"out{suffix}", CLASSES)
        loaded = load_detections(tmp_path / f"out{suffix}", classes=CLASSES)
        assert len(loaded) == len(result.detections["good"])
        assert {d.video for d in loaded} == {"good"}
    write_results(result, tmp_path / "out.vtt", CLASSES, windows_csv=tmp_path / "w.csv")
    vtt = (tmp_path / "out.vtt").read_text()
    assert vtt.startswith("WEBVTT\n\n1\n00:00:")
    assert len(read_windows_csv(tmp_path / "w.csv", CLASSES)) == len(result.windows[0])


def test_same_video_name_twice_is_refused(tmp_path):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "v.mp4").write_bytes(b"")
    with pytest.raises(ScnnError, match="share the name 'v'"):
        find_videos([tmp_path / "a", tmp_path / "b"])


def test_cli_exit_code_reports_failures(model_dir, video, tmp_path):
    out = tmp_path / "det.json"
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    command = [
        sys.executable,
        "-m",
        "scnn",
        "detect",
        str(video),
        str(broken),
        "--model",
        str(model_dir),
        "-o",
        str(out),
        "--proposal-threshold",
        "0",
        "--quiet",
        "--threads",
        "1",
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "broken.mp4: not a readable video" in run.stderr
    assert "Traceback" not in run.stderr
    assert list(json.loads(out.read_text())["results"]) == ["clip one"]


def test_the_model_directory_decides_the_prior_unless_told(model_dir, video, tmp_path):
    detector = Detector.load(model_dir, proposal_threshold=0.0)
    assert detector.model.use_prior
    weighted = detector(video)
    plain = detector.with_settings(use_prior=False)(video)
    # The fixture's prior is 1/6 everywhere: the same detections at a sixth of the score.
    assert [d.score / 6 for d in plain] == pytest.approx([d.score for d in weighted])
    loaded = Detector.load(model_dir).model
    save_model(
        tmp_path / "no_prior",
        proposal=loaded.proposal,
        localization=loaded.localization,
        classes=CLASSES,
        prior=loaded.prior,
        options=OPTIONS,
        windows=WindowConfig(),
        clip=CLIP,
        config={},
        metrics={},
        use_prior=False,
    )
    no_prior = Detector.load(tmp_path / "no_prior", proposal_threshold=0.0)
    assert not no_prior.model.use_prior
    assert [d.score for d in no_prior(video)] == pytest.approx([d.score for d in plain])


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """130 s: three 60 s decode segments, or two lanes of at least 60 s."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    return write_video(path, numbered_frames(3250, 64, 48), 25, "libx264")


EVERY_WINDOW = {"precision": "fp32", "proposal_threshold": 0.0}  # both networks see all


def assert_same_windows(one, two, atol: float) -> None:
    """The same windows, labels and scores (up to ``atol``), in any order: chunks end
    elsewhere (segment or lane borders), so windows come in another order."""
    assert len(one) == len(two) == len(window_grid(3250))
    first, second = (np.lexsort((w.start_frame, w.window_frames)) for w in (one, two))
    for column in ("start_frame", "window_frames", "label_index"):
        assert np.array_equal(getattr(two, column)[second], getattr(one, column)[first]), column
    np.testing.assert_allclose(two.score[second], one.score[first], rtol=0, atol=atol)


def test_decoding_in_two_processes_scores_the_same_windows(model_dir, long_video):
    one = Detector.load(model_dir, lanes=1, **EVERY_WINDOW).score_windows(long_video)
    two = Detector.load(model_dir, decode_processes=2, lanes=1, **EVERY_WINDOW)
    assert_same_windows(one, two.score_windows(long_video), atol=1e-6)


def test_lanes_score_the_same_windows_as_one_pass(model_dir, long_video):
    one = Detector.load(model_dir, lanes=1, **EVERY_WINDOW).score_windows(long_video)
    decoded, threads_in_lanes = [], set()
    lanes = Detector.load(model_dir, lanes=3, **EVERY_WINDOW)
    # 3 asked, room for 2; the first takes a third of the second's 512-frame lead-in more
    assert lanes._lane_ends(long_video) == [1710, 0]
    softmax = lanes._softmax

    def counting_softmax(*args):
        threads_in_lanes.add(torch.get_num_threads())
        return softmax(*args)

    lanes._softmax = counting_softmax
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = lanes.score_windows(long_video, progress=decoded.append)
        assert torch.get_num_threads() == 2  # shared out among the lanes, then as before
    finally:
        torch.set_num_threads(threads)
    assert threads_in_lanes == {1}
    assert sum(decoded) == 3250  # the second lane's lead-in frames are not counted twice
    assert_same_windows(one, two, atol=1e-5)


def test_a_failing_lane_fails_the_video_and_restores_the_threads(model_dir, tmp_path):
    path = tmp_path / "cut.mkv"  # Matroska: the header, with the duration, comes first
    write_video(path, numbered_frames(3250, 64, 48), 25, "libx264")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])  # the last lane runs into the cut
    threads = torch.get_num_threads()
    detector = Detector.load(model_dir, lanes=2)
    assert detector._lane_ends(path) == [1710, 0]  # the header still declares 130 s
    with pytest.raises(VideoError, match=r"cut.mkv: truncated: decoding stopped at 9\d\."):
        detector.score_windows(path)
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_cli_precision_reaches_the_detector(model_dir, video, tmp_path, precision):
    from scnn import cli

    out = tmp_path / "det.csv"
    argv = ["--quiet", "detect", str(video), "--model", str(model_dir), "-o", str(out)]
    assert cli.main([*argv, "--proposal-threshold", "0", "--precision", precision]) == 0
    expected = Detector.load(model_dir, proposal_threshold=0.0, precision=precision)(video)
    got = load_detections(out, classes=CLASSES)
    assert [(d.start_s, d.end_s, d.label) for d in got] == [
        (d.start_s, d.end_s, d.label) for d in expected
    ]
    assert [d.score for d in got] == pytest.approx([d.score for d in expected], abs=1e-4)


def test_cli_rejects_an_unknown_compile_mode_in_one_line(model_dir, video, tmp_path, capsys):
    from scnn import cli

    argv = ["detect", str(video), "--model", str(model_dir), "-o", str(tmp_path / "d.csv")]
    assert cli.main([*argv, "--compile", "fastest"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == (
        "scnn: error: compile mode 'fastest' is not one of default, reduce-overhead, "
        "max-autotune, max-autotune-no-cudagraphs"
    )
    assert not (tmp_path / "d.csv").exists()


def test_cpu_batch_size_keeps_conv1_output_within_the_budget():
    from scnn.detect import cpu_batch_size
    from scnn.model import C3D

    with torch.device("meta"):
        faithful, small = C3D(21), C3D(21, width=1 / 8, crop_size=56)
    # conv1 output per clip: 64 x 16 x 112 x 112 values (25.7 MB in bf16, 51 MB in fp32; the
    # budget is 32 MiB); 8 x 16 x 56 x 56 (0.8 MB in bf16)
    assert cpu_batch_size(faithful, bf16=True) == 1
    assert cpu_batch_size(faithful, bf16=False) == 1
    assert cpu_batch_size(small, bf16=True) == 16


def detect_cli(*argv, out, capsys) -> tuple[int, str]:
    """``scnn detect`` in this process: its exit code and its error output."""
    code = cli.main(["--quiet", "detect", *map(str, argv), "-o", str(out)])
    return code, capsys.readouterr().err


def test_cli_missing_inputs_are_named_before_any_work(video, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    missing = [tmp_path / "missing.mp4", tmp_path / "gone"]
    # The model directory is bad too: the inputs are checked before it is loaded.
    code, err = detect_cli(
        video, *missing, "--model", tmp_path / "no_model", out=out, capsys=capsys
    )
    assert code == cli.EXIT_ERROR
    assert err.count("\n") == 1
    assert "no such file or folder" in err and all(str(path) in err for path in missing)
    assert out.read_text() == "earlier results\n"


def test_cli_folder_without_videos_is_an_error(model_dir, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    folder = tmp_path / "empty folder"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a video")
    code, err = detect_cli(folder, "--model", model_dir, out=out, capsys=capsys)
    assert code == cli.EXIT_ERROR
    assert f"{folder}: no video files" in err and err.count("\n") == 1
    assert out.read_text() == "earlier results\n"


def test_cli_writes_nothing_when_no_video_was_processed(model_dir, tmp_path, capsys):
    out = tmp_path / "det.json"
    out.write_text("earlier results\n")
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    code, err = detect_cli(broken, "--model", model_dir, out=out, capsys=capsys)
    assert code != cli.EXIT_OK
    assert "broken.mp4: not a readable video" in err
    assert f"{out}: no video could be processed" in err
    assert out.read_text() == "earlier results\n"


def test_cli_video_without_detections_is_listed_in_the_json(model_dir, video, tmp_path, capsys):
    out = tmp_path / "det.json"
    code, _ = detect_cli(video, "--model", model_dir, "--min-score", "2", out=out, capsys=capsys)
    assert code == cli.EXIT_OK
    assert json.loads(out.read_text())["results"] == {"clip one": []}
