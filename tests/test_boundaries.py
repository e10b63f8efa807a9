"""A model's boundary network: every window labelled with an action moves by its offsets
before NMS, alike in offline detection, live, the windows CSV and ``scnn postprocess``; a model
without one detects as S-CNN."""

import csv
import dataclasses
import gzip

import numpy as np
import pytest
import torch
from tiny import SMALL_CLASSES, small_model, with_boundaries
from videos import numbered_frames, write_video

from scnn import cli
from scnn.detect import Detector
from scnn.errors import ModelError
from scnn.formats import load_detections
from scnn.live import live_detections
from scnn.modelfile import BOUNDARY_WEIGHTS, MODEL_JSON, load_model, save_model
from scnn.postprocess import window_segments_s
from scnn.records import ScoredWindows
from scnn.video import video_name

SETTINGS = {"proposal_threshold": 0.0, "precision": "fp32"}  # every window reaches both networks
OFFSETS = (0.25, -0.125)  # exact in any float: each start moves L/4 later, each end L/8 earlier
FPS = 25
BACKGROUND_BIAS = 16.0  # the random networks' logits differ by ~10-20


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same small model without a boundary network, with one of OFFSETS, with one of 0."""
    root = tmp_path_factory.mktemp("models")
    plain = small_model(root / "plain")
    model = load_model(plain)
    with torch.no_grad():  # about half of the windows background, so that some do not move
        model.localization.fc8.bias[0] = BACKGROUND_BIAS
    save_model(plain, model)
    return (
        plain,
        with_boundaries(plain, root / "moved", OFFSETS),
        with_boundaries(plain, root / "zero", (0.0, 0.0)),
    )


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(2)
    frames = numbered_frames(300, 64, 48)
    frames = frames // 2 + rng.integers(0, 128, (12, 1, 1, 3)).repeat(25, 0)
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", frames.astype(np.uint8))


def moved_by_hand(windows, offsets=OFFSETS):
    """``windows`` with each action window's start and end moved by ``offsets`` × its length."""
    length_s = windows.window_frames / FPS
    action = windows.label_index > 0
    return dataclasses.replace(
        windows,
        start_s=windows.start_s + np.where(action, offsets[0] * length_s, 0.0),
        end_s=windows.end_s + np.where(action, offsets[1] * length_s, 0.0),
    )


def test_every_action_window_and_so_every_detection_moves_by_the_known_offsets(models, video):
    plain_dir, moved_dir, _ = models
    plain, moved = Detector.load(plain_dir, **SETTINGS), Detector.load(moved_dir, **SETTINGS)
    grid, windows = plain.score_windows(video), moved.score_windows(video)
    assert grid.start_offset_s is None and grid.end_offset_s is None
    for name in ("window_frames", "start_frame", "end_frame", "start_s", "label_index", "score"):
        assert np.array_equal(getattr(windows, name), getattr(grid, name)), name
    length_s, action = grid.window_frames / FPS, grid.label_index > 0
    assert action.any() and not action.all()
    assert np.array_equal(windows.start_offset_s, np.where(action, 0.25 * length_s, 0.0))
    assert np.array_equal(windows.end_offset_s, np.where(action, -0.125 * length_s, 0.0))
    found = moved(video)
    assert found and found != plain(video)
    assert found == plain.detections(moved_by_hand(grid))
    starts = {round(s, 9) for s in grid.start_s + 0.25 * length_s}
    assert all(round(d.start_s, 9) in starts for d in found)


def test_without_a_boundary_network_or_with_zero_offsets_detection_is_unchanged(
    models, video, tmp_path
):
    """The zero-offset network runs, and every window moves by 0: the same bytes out."""
    plain_dir, _, zero_dir = models
    assert load_model(plain_dir).boundaries is None
    assert not (plain_dir / BOUNDARY_WEIGHTS).exists()
    assert '"boundaries"' not in (plain_dir / MODEL_JSON).read_text()
    outputs = {}
    for name, model in (("plain", plain_dir), ("zero", zero_dir)):
        out, windows_csv = tmp_path / f"{name}.json", tmp_path / f"{name}.csv"
        argv = ["--quiet", "detect", str(video), "--model", str(model), "-o", str(out),
                "--save-windows", str(windows_csv), "--proposal-threshold", "0",
                "--precision", "fp32"]  # fmt: skip
        assert cli.main(argv) == 0
        outputs[name] = out.read_bytes(), windows_csv.read_text().splitlines()
    assert outputs["plain"][0] == outputs["zero"][0]
    plain_rows, zero_rows = outputs["plain"][1], outputs["zero"][1]
    assert (
        plain_rows[0]
        == "video,window_frames,start_frame,end_frame,start_s,end_s,loc_class,loc_score"
    )
    assert zero_rows[0] == plain_rows[0] + ",start_offset_s,end_offset_s"
    assert [row.rsplit(",", 2)[0] for row in zero_rows[1:]] == plain_rows[1:]


def test_saved_windows_carry_the_offsets_and_postprocess_moves_them_as_detect(
    models, video, tmp_path
):
    _, moved_dir, _ = models
    out, windows_csv = tmp_path / "d.csv", tmp_path / "w.csv.gz"
    argv = ["--quiet", "detect", str(video), "--model", str(moved_dir), "-o", str(out),
            "--save-windows", str(windows_csv), "--proposal-threshold", "0",
            "--precision", "fp32", "--no-prior"]  # fmt: skip
    assert cli.main(argv) == 0
    with gzip.open(windows_csv, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {r["loc_class"] for r in rows} > {"background"}
    for row in rows:
        length_s = int(row["window_frames"]) / FPS
        action = row["loc_class"] != "background"
        assert float(row["start_offset_s"]) == (0.25 * length_s if action else 0.0)
        assert float(row["end_offset_s"]) == (-0.125 * length_s if action else 0.0)
    classes = tmp_path / "classes.csv"
    classes.write_text(
        "index,name\n" + "".join(f"{i},{c}\n" for i, c in enumerate(SMALL_CLASSES, 1))
    )
    again = tmp_path / "again.csv"
    argv = ["--quiet", "postprocess", str(windows_csv), "--classes", str(classes), "-o", str(again)]
    assert cli.main(argv) == 0
    detected = load_detections(out, classes=SMALL_CLASSES)
    assert detected and load_detections(again, classes=SMALL_CLASSES) == detected


def test_live_moves_the_windows_as_offline(models, video):
    _, moved_dir, _ = models
    detector = Detector.load(moved_dir, **SETTINGS)
    live = [found.detection for found in live_detections(detector, video)]
    offline = [dataclasses.replace(d, video=video_name(video)) for d in detector(video)]
    assert len(live) == len(offline) and set(live) == set(offline)


def test_a_boundary_network_of_other_outputs_is_refused_naming_the_file(models, tmp_path):
    _, moved_dir, _ = models
    broken = with_boundaries(moved_dir, tmp_path / "broken", OFFSETS)
    model = load_model(broken)
    wrong = dataclasses.replace(model, boundaries=model.localization)
    save_model(broken, wrong)
    with pytest.raises(ModelError, match="has 3 outputs, a boundary network has 2") as error:
        load_model(broken)
    assert BOUNDARY_WEIGHTS in str(error.value)


def test_a_missing_boundary_network_is_named(models, tmp_path):
    _, moved_dir, _ = models
    missing = with_boundaries(moved_dir, tmp_path / "missing", OFFSETS)
    (missing / BOUNDARY_WEIGHTS).unlink()
    with pytest.raises(ModelError, match=f"{BOUNDARY_WEIGHTS}: weights file missing"):
        load_model(missing)


def test_offsets_that_cross_the_start_past_the_end_leave_the_window_on_the_grid():
    start_s, end_s = np.array([0.0, 10.0]), np.array([2.0, 12.0])
    windows = ScoredWindows(
        videos=np.array(["v", "v"]),
        window_frames=np.array([50, 50]),
        start_frame=np.array([1, 251]),
        end_frame=np.array([50, 300]),
        start_s=start_s,
        end_s=end_s,
        label_index=np.array([1, 1]),
        score=np.array([0.9, 0.9]),
        classes=("a",),
        start_offset_s=np.array([0.5, 1.5]),
        end_offset_s=np.array([-0.5, -1.0]),
    )
    assert window_segments_s(windows).tolist() == [[0.5, 1.5], [10.0, 12.0]]
