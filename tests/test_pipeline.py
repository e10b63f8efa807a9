"""The streaming pipeline of one video against a plain whole-video computation."""

import itertools
import threading
import tracemalloc

import numpy as np
import pytest
import torch
from detecting import EVERY_WINDOW, assert_same_windows, long_video
from tiny import MODEL_CLIP
from videos import numbered_frames, write_video

from scnn.clips import assemble_clips, gather_clips, normalize_clips
from scnn.detect import Detector
from scnn.errors import VideoError
from scnn.pipeline import ClipQueue, chunk_windows, probabilities
from scnn.runtime import cpu_batch_size
from scnn.video import read_frames
from scnn.windows import WindowConfig, window_grid

CLIP = MODEL_CLIP.convention()


def whole_video_scores(detector: Detector, path) -> tuple[np.ndarray, ...]:
    """Every window of the grid through both networks, from the fully decoded video."""
    frames = read_frames(path, size=CLIP.frame_size)
    grid = window_grid(len(frames))
    clips = assemble_clips(frames, grid.start_frame, grid.length_frames, CLIP, train=False)
    with torch.inference_mode():
        p_action = torch.softmax(detector.networks.proposal(clips), 1)[:, 1]
        score, label = torch.softmax(detector.networks.localization(clips), 1).max(1)
    return grid, p_action.numpy(), label.numpy(), score.numpy()


def threshold_in_widest_gap(scores: np.ndarray) -> float:
    """Halfway across the widest gap between the middle half of the sorted scores. Windows of
    identical content tie, and a threshold on a tie splits them by the last bits of each batch's
    arithmetic, which differ between CPUs' kernels (AVX-512 and AMX against AVX2)."""
    ordered = np.sort(scores)
    quarter = len(ordered) // 4
    middle = ordered[quarter : len(ordered) - quarter]
    widest = int(np.argmax(np.diff(middle)))
    return float((middle[widest] + middle[widest + 1]) / 2)


def test_streaming_equals_whole_video_computation(model_dir, video):
    detector = Detector.load(model_dir, batch_size=7, precision="fp32")
    grid, p_action, label, score = whole_video_scores(detector, video)
    threshold = threshold_in_widest_gap(p_action)
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


class _NotToBeRun(torch.nn.Module):
    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the proposal network ran")


def test_every_grid_window_reaches_the_localization_network_alone_at_threshold_zero(
    model_dir, video
):
    detector = Detector.load(model_dir, proposal_threshold=0.0, lanes=1)
    detector.networks.proposal = _NotToBeRun()
    windows = detector.score_windows(video)
    # L = 16..512, stride L/4, last frame <= 700: 172 + 84 + 40 + 18 + 7 + 2 windows
    assert len(windows) == len(window_grid(700)) == 323


def test_probabilities_near_one_keep_their_order():
    logits = torch.tensor([[0.0, 20.0], [0.0, 30.0]])
    assert torch.softmax(logits, dim=1)[:, 1].tolist() == [1.0, 1.0]  # float32 ties them
    p = probabilities(logits)[:, 1]
    assert p.dtype == torch.float64
    assert p.tolist() == pytest.approx([1 / (1 + np.exp(-20)), 1 / (1 + np.exp(-30))], rel=1e-15)
    assert p[0] < p[1] < 1.0


@pytest.mark.parametrize("first_end", [0, 400])
def test_chunks_bring_each_window_ending_after_first_end_once(first_end):
    frames = numbered_frames(700, 64, 48)
    chunks = iter(np.split(frames, [100, 103, 400]))  # 100, 3, 297 and 300 frames
    steps = list(chunk_windows(chunks, WindowConfig(), CLIP, torch.device("cpu"), first_end))
    grid = window_grid(700)
    after = grid.end_frame > first_end
    expected = sorted(zip(grid.length_frames[after], grid.start_frame[after], strict=True))
    got = [
        pair
        for step in steps
        for pair in zip(step.windows.length_frames, step.windows.start_frame, strict=True)
    ]
    assert sorted(got) == expected and len(got) == len(set(got))
    assert [step.frames_seen for step in steps] == [100, 103, 400, 700]
    assert sum(step.new_frames for step in steps) == 700 - first_end
    assert [len(step.frame_index) for step in steps] == [len(step.windows) for step in steps]
    assert steps[1].frame_index.shape[1:] == (16,)


def test_chunk_clips_are_those_cut_from_the_whole_video():
    # Chunks of uneven sizes: the frame array is reused, moved to its front and grown
    frames = np.random.default_rng(0).integers(0, 256, (2300, 48, 64, 3), np.uint8)
    sizes = [5, 250, 600, 7, 256, 256, 1, 300, 256, 369]
    chunks = iter(np.split(frames, np.cumsum(sizes)[:-1]))
    compared = 0
    for step in chunk_windows(chunks, WindowConfig(), CLIP, torch.device("cpu")):
        windows, queue = step.windows, ClipQueue()
        step.queue_clips(queue, np.arange(len(windows)))
        if len(windows):
            clips, _ = queue.pop(len(windows))
            expected = gather_clips(frames, windows.start_frame, windows.length_frames, CLIP, False)
            assert torch.equal(clips, expected)
            compared += len(windows)
    assert compared == len(window_grid(len(frames)))


def test_clip_queue_gives_clips_first_in_first_out_as_it_reuses_and_grows_its_array():
    rng = np.random.default_rng(1)
    queue, expected, popped, row = ClipQueue(), [], [], 0
    # 10 in, 3 out, 2 in: the 7 waiting move to the front, over their old place; then growth
    for pushed, taken in [(10, 3), (2, 5), (20, 16), (1, 0), (30, 7), (0, 16), (5, 40)]:
        clips = torch.from_numpy(rng.integers(0, 256, (pushed, 2, 3), np.uint8))
        queue.push(clips, np.arange(row, row + pushed))
        expected += list(clips)
        row += pushed
        out, rows = queue.pop(taken)
        assert len(out) == len(rows) == min(taken, len(expected) - len(popped))
        popped += list(out.clone())
        assert rows.tolist() == list(range(len(popped) - len(rows), len(popped)))
    assert len(queue) == 0 and len(popped) == len(expected) == row
    assert all(torch.equal(a, b) for a, b in zip(popped, expected, strict=True))


def test_a_long_stream_allocates_no_frames_or_clips_per_chunk():
    chunk = np.random.default_rng(2).integers(0, 256, (256, 48, 64, 3), np.uint8)  # 2.4 MB
    steps = chunk_windows(itertools.repeat(chunk, 40), WindowConfig(), CLIP, torch.device("cpu"))
    queue = ClipQueue()
    tracemalloc.start()
    try:
        for number, step in enumerate(steps):
            step.queue_clips(queue, np.arange(len(step.windows)))
            while len(queue) >= 16:
                queue.pop(16)
            if number == 5:  # the arrays have their size: from now on, nothing new
                tracemalloc.reset_peak()
                start, _ = tracemalloc.get_traced_memory()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak - start < 200_000  # NumPy's allocations (frames, clips, indices) in bytes


def test_clip_queue_grows_in_the_first_chunks_only():
    # The faithful grid's windows per 256-frame chunk (the first one: 109), batches of 16:
    # as the clips left waiting vary (13, 11, ..., 1, then 15), the array grows only while
    # the first two chunks arrive, never for a few more waiting clips later
    queue, arrays = ClipQueue(16), []
    for count in [109] + [126] * 20:
        queue.push(torch.zeros((count, 2, 3), dtype=torch.uint8), np.arange(count))
        if queue.storage is not (arrays or [None])[-1]:
            arrays.append(queue.storage)
        while len(queue) >= 16:
            queue.pop(16)
    assert [len(array) for array in arrays] == [109 + 15, 126 + 15]


@pytest.mark.parametrize("threshold", [0.0, 1e-30])
def test_flush_holds_fewer_than_two_batches_of_survivors(model_dir, threshold):
    # Every window passes (P(action) >= 1e-30, or no proposal network): the localization
    # network scores each batch as it is complete, so survivors never hold 40 clips at once
    networks = Detector.load(model_dir, batch_size=4, proposal_threshold=threshold).networks
    proposals, survivors = ClipQueue(4), ClipQueue(4)
    shape = (40, CLIP.clip_frames, CLIP.crop_size, CLIP.crop_size, 3)
    clips = torch.from_numpy(np.random.default_rng(3).integers(0, 256, shape, np.uint8))
    proposals.push(clips, np.arange(40))
    with torch.inference_mode():
        scored = networks.flush(proposals, survivors, final=True)
    assert [batch.rows.tolist() for batch in scored] == np.arange(40).reshape(10, 4).tolist()
    if threshold == 0:  # the proposal queue is scored as it is: no second copy
        assert survivors.storage is None
    else:
        assert len(survivors.storage) < 2 * 4


def test_too_short_video_is_an_error(model_dir, tmp_path):
    path = tmp_path / "short.mp4"
    write_video(path, numbered_frames(10, 64, 48), 25, "libx264")
    with pytest.raises(VideoError, match="short.mp4.*shorter than the shortest window"):
        Detector.load(model_dir).score_windows(path)


def test_decoding_in_two_processes_scores_the_same_windows(model_dir, tmp_path):
    path = long_video(tmp_path / "long.mp4")
    one = Detector.load(model_dir, lanes=1, **EVERY_WINDOW).score_windows(path)
    two = Detector.load(model_dir, decode_processes=2, lanes=1, **EVERY_WINDOW)
    assert_same_windows(one, two.score_windows(path), atol=1e-6)


def test_cpu_batch_size_keeps_conv1_output_within_the_budget():
    from scnn.model import C3D

    with torch.device("meta"):
        faithful, small = C3D(21), C3D(21, width=1 / 8, crop_size=56)
    # conv1 output per clip: 64 x 16 x 112 x 112 values (25.7 MB in bf16, 51 MB in fp32; the
    # budget is 32 MiB); 8 x 16 x 56 x 56 (0.8 MB in bf16)
    assert cpu_batch_size(faithful, bf16=True) == 1
    assert cpu_batch_size(faithful, bf16=False) == 1
    assert cpu_batch_size(small, bf16=True) == 16


def test_each_thread_normalises_its_batches_into_one_kept_array(model_dir):
    networks = Detector.load(model_dir, batch_size=4).networks
    shape = (4, CLIP.clip_frames, CLIP.crop_size, CLIP.crop_size, 3)
    clips = torch.from_numpy(np.random.default_rng(5).integers(0, 256, shape, np.uint8))

    def storages(batches: list[torch.Tensor]) -> set[int]:
        return {networks._input(batch).untyped_storage().data_ptr() for batch in batches}

    here = storages([clips, clips[:3], clips])
    elsewhere: list[set[int]] = []
    thread = threading.Thread(target=lambda: elsewhere.append(storages([clips, clips])))
    thread.start()
    thread.join()
    assert len(here) == 1 and len(elsewhere[0]) == 1 and here != elsewhere[0]
    expected = normalize_clips(clips[:3], networks.convention, networks.dtype)
    assert torch.equal(networks._input(clips[:3]), expected)
