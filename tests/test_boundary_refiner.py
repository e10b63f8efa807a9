"""The boundary-clip network where detections are made: offline detection reads the video a
second time and refines each detection as refine_segments does on the whole decoded video;
the streaming refiner gives the same from small chunks, holding no more than a detection's
reach; live gives offline's detections; 0 rounds, or no network, detect as before."""

import dataclasses

import av
import numpy as np
import pytest
import torch
from tiny import (
    SMALL_CLASSES,
    constant_network,
    small_model,
    with_boundaries,
    with_boundary_clips,
)
from videos import numbered_frames, write_video

from scnn import boundary_refiner, cli
from scnn.boundary_clips import BoundaryClips, network_offsets, reach_frames, refine_segments
from scnn.boundary_refiner import BoundaryRefiner, reach_groups
from scnn.detect import Detector
from scnn.errors import ScnnError
from scnn.formats import load_detections
from scnn.live import live_detections
from scnn.modelfile import load_model, save_model
from scnn.records import Detection
from scnn.runtime import chunk_frames_for
from scnn.video import iter_frames, read_frames, video_name

SETTINGS = {"proposal_threshold": 0.0, "precision": "fp32"}  # every window reaches both networks
FPS = 25
NUM_FRAMES = 900


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The small model without boundary clips, with a constant network (every clip says
    start +0.25, end −0.125 of the clip), with one whose outputs follow the frames, and with
    that one after a boundary network (every window's start +0.25, end −0.125 of it)."""
    root = tmp_path_factory.mktemp("models")
    plain = small_model(root / "plain")
    constant = with_boundary_clips(plain, root / "constant", (0.25, -0.125))
    seen = with_boundary_clips(plain, root / "seen", (0.0, 0.0))
    model = load_model(seen)
    torch.manual_seed(3)
    torch.nn.init.normal_(model.boundary_clips.network.fc8.weight, std=0.05)
    save_model(seen, model)
    both = with_boundary_clips(
        with_boundaries(plain, root / "moved", (0.25, -0.125)), root / "both", (0.0, 0.0)
    )
    model = load_model(both)
    model.boundary_clips.network.load_state_dict(
        load_model(seen).boundary_clips.network.state_dict()
    )
    save_model(both, model)
    return plain, constant, seen, both


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    rng = np.random.default_rng(2)
    frames = numbered_frames(NUM_FRAMES, 64, 48)
    frames = frames // 2 + rng.integers(0, 128, (36, 1, 1, 3)).repeat(25, 0)
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", frames.astype(np.uint8))


@pytest.fixture(scope="module")
def unrefined(models, video):
    """The detections of the model without boundary clips."""
    return Detector.load(models[0], **SETTINGS)(video)


@pytest.fixture(scope="module")
def frames(models, video):
    """The whole video, decoded at the models' frame size."""
    return read_frames(video, FPS, load_model(models[0]).convention.frame_size)


def by_hand(detector, detections, frames):
    """Each detection refined alone by refine_segments on the whole decoded video."""
    clips, model = detector.boundary_clips, detector.model
    offsets_of = network_offsets(clips.network)
    moved = []
    for found in detections:
        segment = np.array([[found.start_s, found.end_s]])
        (start_s, end_s), = refine_segments(
            segment, frames, 1, len(frames), clips, offsets_of, model.convention, FPS
        )  # fmt: skip
        moved.append(dataclasses.replace(found, start_s=float(start_s), end_s=float(end_s)))
    return moved


def test_offline_detection_refines_each_detection_from_the_whole_video(
    models, video, unrefined, frames
):
    """Each model's detections are those of its 0 rounds, each refined alone on the whole
    decoded video; with a boundary network too, the windows move first."""
    assert len(frames) == NUM_FRAMES and len(unrefined) > 5
    for model_dir in models[1:]:
        before = Detector.load(model_dir, boundary_clip_rounds=0, **SETTINGS)(video)
        assert (before == unrefined) == (model_dir != models[3])
        detector = Detector.load(model_dir, **SETTINGS)
        found = detector(video)
        assert found == by_hand(detector, before, frames)
        assert [(d.label, d.score) for d in found] == [(d.label, d.score) for d in before]
        assert all(
            (d.start_s, d.end_s) != (u.start_s, u.end_s) for d, u in zip(found, before, strict=True)
        )


def test_a_constant_network_moves_each_detection_by_the_worked_answer(models, video, unrefined):
    """Every clip says +0.25 (start) and −0.125 (end) of itself; each round's clips span
    round(0.5 × the detection) frames (at least 16), held inside the video."""
    _, constant_dir, _, _ = models
    found = Detector.load(constant_dir, **SETTINGS)(video)
    for before, after in zip(unrefined, found, strict=True):
        start, end = before.start_s * FPS, before.end_s * FPS
        for _ in range(2):
            clip = max(16, round(0.5 * (end - start)))
            begin_start = max(1, round(start - (clip - 1) / 2))
            begin_end = min(NUM_FRAMES - clip + 1, round(end - (clip - 1) / 2))
            moved = (begin_start + (clip - 1) / 2 + 0.25 * clip,
                     begin_end + (clip - 1) / 2 - 0.125 * clip)  # fmt: skip
            if moved[0] < moved[1]:  # a round that would cross them leaves them
                start, end = moved
        assert (after.start_s, after.end_s) == pytest.approx((start / FPS, end / FPS), abs=1e-9)


def test_compile_compiles_the_boundary_clip_network_and_moves_as_eager(models, video, unrefined):
    """``--compile``'s detector runs its boundary-clip network compiled (one shape: each
    detection's clips a batch of their own), to eager's boundaries."""
    _, _, seen_dir, _ = models
    eager = Detector.load(seen_dir, **SETTINGS)
    compiled = Detector.load(seen_dir, compile="default", **SETTINGS)
    assert isinstance(compiled.boundary_clips.network, torch._dynamo.eval_frame.OptimizedModule)
    expected = eager.refine(video, unrefined[:2])
    found = compiled.refine(video, unrefined[:2])
    assert [(d.label, d.score) for d in found] == [(d.label, d.score) for d in expected]
    segments = np.array([(d.start_s, d.end_s) for d in found])
    assert segments == pytest.approx(np.array([(d.start_s, d.end_s) for d in expected]), abs=1e-6)
    assert (segments != np.array([(d.start_s, d.end_s) for d in unrefined[:2]])).any(axis=1).all()


def test_reaches_far_apart_are_read_in_passes_of_their_own():
    """Frames 101..399 (299) lie between the first two reaches and 501..699 (199) between
    the last two."""
    first, last = np.array([400, 10, 60, 700]), np.array([500, 50, 100, 950])
    for gap, groups in [
        (300, [[1, 2, 0, 3]]),
        (250, [[1, 2], [0, 3]]),
        (199, [[1, 2], [0], [3]]),
        (0, [[1], [2], [0], [3]]),
    ]:
        assert [g.tolist() for g in reach_groups(first, last, gap)] == groups


def test_offline_passes_that_seek_over_gaps_give_the_whole_videos_result(
    models, video, unrefined, frames, monkeypatch
):
    """With every gap sought over, each detection is refined from a pass over its own reach
    (and those it touches) and gives what the whole decoded video gives; the passes share one
    open of the MP4 (its whole index, held once)."""
    passes, opened = [], []
    real_open = av.open

    def recorded(*args, **kwargs):
        passes.append((kwargs["start_frame"], kwargs["stop_frame"]))
        return iter_frames(*args, **kwargs)

    def counting_open(source, *args, **kwargs):
        opened.append(source)
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(boundary_refiner, "SEEK_GAP_FRAMES", 0)
    monkeypatch.setattr(boundary_refiner, "iter_frames", recorded)
    detector = Detector.load(models[2], **SETTINGS)
    chosen = sorted(unrefined, key=lambda d: d.start_s)
    chosen = [chosen[0], chosen[len(chosen) // 2], chosen[-1]]
    monkeypatch.setattr(av, "open", counting_open)
    assert detector.refine(video, chosen) == by_hand(detector, chosen, frames)
    segments = np.array([(d.start_s, d.end_s) for d in chosen])
    first, last = reach_frames(segments, detector.boundary_clips, FPS, 16)
    assert len(passes) == 3
    assert len(opened) == 1
    assert sorted(passes) == sorted(zip((first - 1).tolist(), last.tolist(), strict=True))


def test_every_pass_holds_its_frames_in_one_array_of_one_size(
    models, video, unrefined, frames, monkeypatch
):
    """Each pass's array is made at once as large as the largest reach and a chunk, the same
    size in every pass, and never grown: arrays grown pass by pass to sizes of their own
    needed pieces of the heap that the first pass's holes held or not."""
    sizes: list[int] = []
    most_held: list[int] = []
    real_feed = BoundaryRefiner.feed

    def feed(refiner: BoundaryRefiner, chunk: np.ndarray) -> None:
        real_feed(refiner, chunk)
        if refiner.storage is not None:
            sizes.append(len(refiner.storage))
            most_held.append(refiner.most_held)

    monkeypatch.setattr(boundary_refiner, "SEEK_GAP_FRAMES", 0)  # a pass per reach
    monkeypatch.setattr(BoundaryRefiner, "feed", feed)
    detector = Detector.load(models[2], **SETTINGS)
    chosen = sorted(unrefined, key=lambda d: d.start_s)
    chosen = [chosen[0], chosen[len(chosen) // 2], chosen[-1]]  # apart: a pass each
    assert detector.refine(video, chosen) == by_hand(detector, chosen, frames)
    segments = np.array([(d.start_s, d.end_s) for d in chosen])
    first, last = reach_frames(segments, detector.boundary_clips, FPS, 16)
    chunk = chunk_frames_for(detector.device)
    assert len(reach_groups(first, last, 0)) >= 2 and len(set(sizes)) == 1
    assert max(most_held) <= sizes[0] <= int((last - first + 1).max()) + chunk


@pytest.mark.parametrize("chunk", [1, 7, 100])
def test_small_chunks_give_the_whole_arrays_result_within_the_largest_reach(
    models, unrefined, frames, chunk
):
    detector = Detector.load(models[2], **SETTINGS)
    refiner = detector.boundary_refiner()
    serials = refiner.add(unrefined)
    refiner.keep_from = np.inf  # every detection is known
    assert serials == list(range(len(unrefined)))
    refined = {}
    for start in range(0, NUM_FRAMES, chunk):
        refiner.feed(frames[start : start + chunk])
        refined.update(refiner.ready())
    refined.update(refiner.finish())
    assert [refined[k] for k in serials] == by_hand(detector, unrefined, frames)
    segments = np.array([(d.start_s, d.end_s) for d in unrefined])
    first, last = reach_frames(segments, detector.boundary_clips, FPS, 16)
    largest = int((np.minimum(last, NUM_FRAMES) - first + 1).max())
    assert 0 < refiner.most_held <= largest + chunk - 1
    assert len(refiner.storage) <= refiner.most_held + chunk  # grown to what it had to hold
    assert refiner.end == refiner.start  # nothing held once every detection is refined


def test_frames_no_detection_needs_are_not_held(models):
    """One detection at 20-21 s in a 24 s stream fed 10 frames at a time: the frames before
    its reach are never held, and none is once it is refined."""
    model = load_model(models[0])
    clips = BoundaryClips(constant_network(model, (0.0, 0.0)), rounds=1)
    refiner = BoundaryRefiner(clips, network_offsets(clips.network), model.convention, FPS)
    detection = Detection("v", 20.0, 21.0, "jump", 0.9)
    refiner.add([detection])
    refiner.keep_from = np.inf
    (first,), (last,) = refiner.reach([detection])
    width, height = model.convention.frame_size
    chunk = np.zeros((10, height, width, 3), np.uint8)
    held, refined = [], []
    for _ in range(60):
        refiner.feed(chunk)
        held.append(refiner.held_from if refiner.end > refiner.start else None)
        refined += refiner.ready()
    assert [serial for serial, _ in refined] == [0]
    assert min(frame for frame in held if frame is not None) >= first - 9
    assert refiner.most_held <= last - first + 10
    assert refiner.waiting == 0 and refiner.end == refiner.start


def test_live_gives_the_offline_detections_holding_a_few_chunks(models, video, monkeypatch, caplog):
    refiners = []
    made = Detector.boundary_refiner
    monkeypatch.setattr(
        Detector, "boundary_refiner", lambda self: refiners.append(made(self)) or refiners[-1]
    )
    _, constant_dir, seen_dir, both_dir = models
    # chunks of 256 frames, the video has 900; a boundary network widens what may be needed
    for model_dir, most_chunks in ((constant_dir, 2), (seen_dir, 2), (both_dir, 3)):
        detector = Detector.load(model_dir, **SETTINGS)
        live = [found.detection for found in live_detections(detector, video)]
        offline = [dataclasses.replace(d, video=video_name(video)) for d in detector(video)]
        assert len(live) == len(offline) and set(live) == set(offline)
        assert refiners[-1].most_held < most_chunks * 256
    assert "not applied" not in caplog.text


def test_a_detection_whose_frames_were_let_go_is_given_as_it_is_and_said(models, caplog):
    model = load_model(models[0])
    clips = BoundaryClips(constant_network(model, (0.25, -0.125)), rounds=1)
    refiner = BoundaryRefiner(clips, network_offsets(clips.network), model.convention, FPS)
    width, height = model.convention.frame_size
    refiner.keep_from = 200  # a promise that no detection will need frames before 200
    refiner.feed(np.zeros((300, height, width, 3), np.uint8))
    late = Detection("v", 2.0, 3.0, "jump", 0.9)  # it needs frames from about 40
    refiner.add([late])
    assert refiner.ready() == [(0, late)]
    assert "boundary clips not applied to jump at 2.00-3.00 s" in caplog.text


def test_zero_rounds_detect_as_the_model_without_the_network(models, video, tmp_path):
    plain_dir, _, seen_dir, _ = models
    outputs = []
    for model_dir, rounds in ((plain_dir, []), (seen_dir, ["--boundary-clips", "0"])):
        out = tmp_path / f"{model_dir.name}.json"
        argv = ["--quiet", "detect", str(video), "--model", str(model_dir), "-o", str(out),
                "--proposal-threshold", "0", "--precision", "fp32", *rounds]  # fmt: skip
        assert cli.main(argv) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert Detector.load(seen_dir, boundary_clip_rounds=0, **SETTINGS).boundary_refiner() is None


def test_rounds_on_the_command_line_override_the_models(models, video, unrefined, frames):
    once = Detector.load(models[1], boundary_clip_rounds=1, **SETTINGS)
    assert once.boundary_clips.rounds == 1
    assert once(video) == by_hand(once, unrefined, frames)


def test_rounds_asked_of_a_model_without_the_network_are_refused(models):
    plain_dir, _, _, _ = models
    with pytest.raises(ScnnError, match="no boundary-clip network") as error:
        Detector.load(plain_dir, boundary_clip_rounds=2)
    assert error.value.path == str(plain_dir)  # the model directory is named


def test_postprocess_with_the_model_and_the_videos_moves_as_detect(models, video, tmp_path):
    _, _, seen_dir, _ = models
    out, windows_csv = tmp_path / "d.csv", tmp_path / "w.csv"
    argv = ["--quiet", "detect", str(video), "--model", str(seen_dir), "-o", str(out),
            "--save-windows", str(windows_csv), "--proposal-threshold", "0",
            "--precision", "fp32", "--no-prior"]  # fmt: skip
    assert cli.main(argv) == 0
    detected = load_detections(out, classes=SMALL_CLASSES)
    again, unmoved = tmp_path / "again.csv", tmp_path / "unmoved.csv"
    argv = ["--quiet", "postprocess", str(windows_csv), "-o", str(again), "--model",
            str(seen_dir), "--videos", str(video.parent), "--precision", "fp32"]  # fmt: skip
    assert cli.main(argv) == 0  # the classes are the model's
    assert load_detections(again, classes=SMALL_CLASSES) == detected
    argv[4:7] = [str(unmoved), "--model", str(seen_dir), "--boundary-clips", "0"]
    assert cli.main(argv) == 0
    unrefined = load_detections(unmoved, classes=SMALL_CLASSES)
    assert [(d.label, d.score) for d in unrefined] == [(d.label, d.score) for d in detected]
    assert [(d.start_s, d.end_s) for d in unrefined] != [(d.start_s, d.end_s) for d in detected]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", "MODEL"], "--model and --videos go together"),
        (["--videos", "VIDEOS"], "--model and --videos go together"),
        (["--model", "PLAIN", "--videos", "VIDEOS"], "has no boundary-clip network"),
        (["--model", "MODEL", "--videos", "ELSEWHERE"], "no video file for 'clip'"),
    ],
)
def test_postprocess_refuses_boundary_clips_it_cannot_apply_in_one_line(
    models, video, tmp_path, capsys, options, message
):
    plain_dir, _, seen_dir, _ = models
    windows_csv = tmp_path / "w.csv"
    argv = ["--quiet", "detect", str(video), "--model", str(plain_dir), "-o",
            str(tmp_path / "d.json"), "--save-windows", str(windows_csv)]  # fmt: skip
    assert cli.main(argv) == 0
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "other.mp4").write_bytes(video.read_bytes())
    paths = {"MODEL": seen_dir, "PLAIN": plain_dir, "VIDEOS": video.parent,
             "ELSEWHERE": tmp_path / "elsewhere"}  # fmt: skip
    out = tmp_path / "out.json"
    classes = tmp_path / "classes.csv"
    classes.write_text("index,name\n1,jump\n2,run\n")
    argv = ["--quiet", "postprocess", str(windows_csv), "-o", str(out), "--classes", str(classes)]
    assert cli.main(argv + [str(paths.get(o, o)) for o in options]) != 0
    error = capsys.readouterr().err.strip()
    assert message in error and "\n" not in error
    assert not out.exists()
