"""The prediction pipeline (method.md §4), streaming over a video of any length.

Frames are decoded once, in a background thread, into a buffer no longer than the longest
window. Every window of the grid is scored as soon as its last frame has arrived: its clip is
assembled at once, so frames can be dropped, and clips wait in a queue until a full batch is
ready for the proposal network. Survivors (P(action) ≥ threshold) queue again for the
localization network. Memory therefore depends on the batch size and the longest window, not
on the length of the video. On a CPU a long video is split into time segments, lanes, each
decoded and scored this way by a thread of its own.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import json
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scnn import distributed
from scnn.allocator import MMAP_THRESHOLD_BYTES, keep_large_allocations
from scnn.clips import gather_clips, normalize_clips
from scnn.compiling import check_compile_mode
from scnn.distributed import SINGLE, World
from scnn.errors import ScnnError, VideoError
from scnn.fileio import atomic_write_text
from scnn.formats import SUBTITLE_FORMATS, write_detections
from scnn.formats.windows_csv import concat_windows, write_windows_csv
from scnn.model import C3D, fold_batch_norm
from scnn.modelfile import LoadedModel, load_model, state_bytes
from scnn.parallel_decode import iter_frames_parallel
from scnn.postprocess import postprocess
from scnn.precision import native_bf16
from scnn.records import Detection, ScoredWindows
from scnn.video import iter_frames, num_frames, probe
from scnn.windows import Windows, window_grid

log = logging.getLogger(__name__)

BUNDLED_MODEL = Path(__file__).parent / "models" / "default"
# Clips per network call. On a CPU small batches win: at most CPU_BATCH_SIZE clips, and only
# as many as keep the largest activation (conv1's output) small enough for the heap that
# scnn.allocator keeps (MMAP_THRESHOLD_BYTES), so its memory is reused instead of page-faulted
# afresh on each call. Measured best for both sizes (benchmarks/RESULTS.md): 16 clips of the
# CPU model (1.5-2x the clips/s of batch 64), 1 of the full-size C3D (12.0 clips/s; batches
# 2 and 4 within noise of it, 11.7-13.0; 8: 11.1). On a GPU, large.
CPU_BATCH_SIZE = 16
GPU_BATCH_SIZE = 256
LANE_MIN_S = 60.0  # seconds of video per lane, at least: each lane decodes a longest window more
# Lanes by default: one per torch thread, at most this many (each holds its own frame buffer
# and activations, and decodes its lead-in); the torch threads are shared out among them.
MAX_LANES = 8
DECODE_QUEUE_CHUNKS = 2  # decoded chunks waiting for the network: bounds memory
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class DetectConfig:
    """Prediction settings; ``None`` takes the model directory's default."""

    proposal_threshold: float | None = None
    nms_threshold: float | None = None
    min_score: float | None = None
    top_k: int | None = None
    batch_size: int | None = None  # None: cpu_batch_size on a CPU, GPU_BATCH_SIZE on CUDA
    use_prior: bool | None = None  # weight scores by the window-length prior
    precision: str = "auto"  # "fp32", "bf16", or "auto": bf16 where the hardware computes in it
    compile: str = ""  # torch.compile mode for both networks (e.g. "default"); "": eager
    # Processes decoding one long video by time segments (parallel_decode.py). None: 1 on a
    # CPU, where the networks need every core; on a GPU, one per 2 cores, at most 8.
    decode_processes: int | None = None
    # Lanes scoring one long video on a CPU, a time segment each (Detector._lane_ends).
    # 0: one per torch thread, at most MAX_LANES; 1: none.
    lanes: int = 0

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ScnnError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")
        check_compile_mode(self.compile)


@dataclass
class _Lane:
    """What one lane scored: its windows, chunk by chunk, and (rows, label, score) batches."""

    grid_parts: list[Windows] = field(default_factory=list)
    results: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=list)
    frames: int = 0  # frames seen, counted from the video's first


@dataclass
class _ClipQueue:
    """Clips and their window rows waiting for one network, flushed a batch at a time."""

    clips: list[torch.Tensor] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows)

    def push(self, clips: torch.Tensor, rows: np.ndarray) -> None:
        if len(rows):
            self.clips.append(clips)
            self.rows.append(rows)

    def pop(self, size: int) -> tuple[torch.Tensor, np.ndarray]:
        """The first ``size`` clips (fewer if fewer wait). Only the pieces that make up the
        batch are copied: concatenating the whole queue on every pop cost 15 % of detection."""
        taken_clips, taken_rows, count = [], [], 0
        while count < size and self.rows:
            clips, rows = self.clips[0], self.rows[0]
            need = size - count
            if len(rows) > need:
                self.clips[0], self.rows[0] = clips[need:], rows[need:]
                clips, rows = clips[:need], rows[:need]
            else:
                del self.clips[0], self.rows[0]
            taken_clips.append(clips)
            taken_rows.append(rows)
            count += len(rows)
        batch = taken_clips[0] if len(taken_clips) == 1 else torch.cat(taken_clips)
        return batch, np.concatenate(taken_rows)


def _concatenate(
    first: np.ndarray | torch.Tensor, second: np.ndarray | torch.Tensor
) -> np.ndarray | torch.Tensor:
    if isinstance(first, torch.Tensor):
        return torch.cat([first, second])
    return np.concatenate([first, second])


def _background_chunks(
    chunks: Iterator[np.ndarray], pin: bool = False
) -> Iterator[np.ndarray | torch.Tensor]:
    """Run ``chunks`` in a thread so decoding overlaps the networks; re-raise its errors here.
    With ``pin``, chunks come as page-locked tensors, ready for an asynchronous copy to a GPU."""
    handoff: queue.Queue = queue.Queue(maxsize=DECODE_QUEUE_CHUNKS)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for frames in chunks:
                chunk = torch.from_numpy(frames).pin_memory() if pin else frames
                while not stop.is_set():
                    with contextlib.suppress(queue.Full):
                        handoff.put(chunk, timeout=0.1)
                        break
                if stop.is_set():
                    return
            handoff.put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def cpu_batch_size(network: C3D, bf16: bool) -> int:
    """Clips per call on a CPU: see CPU_BATCH_SIZE."""
    element = 2 if bf16 else 4
    per_clip = network.conv1.out_channels * network.clip_frames * network.crop_size**2 * element
    return max(1, min(CPU_BATCH_SIZE, MMAP_THRESHOLD_BYTES // per_clip))


def inference_network(network: C3D, device: torch.device, bf16: bool) -> C3D:
    """A copy of ``network`` for prediction: eval mode, batch norm folded into the
    convolutions, on ``device``, channels-last, with bf16 weights when ``bf16``.

    bf16 weights rather than autocast: autocast max-pools in fp32, and casting every pooled
    activation to fp32 and back cost ~20 % of the CPU model's time.
    """
    network = fold_batch_norm(copy.deepcopy(network).eval())
    network = network.to(device, memory_format=torch.channels_last_3d)
    return network.to(torch.bfloat16) if bf16 else network


class Detector:
    """A trained S-CNN: ``Detector.load(path)(video)`` gives the video's detections.

    The networks run as inference copies (:func:`inference_network`), in bf16 where the
    hardware computes in bf16 (``precision="auto"``: CUDA, or a CPU with AVX512-BF16 or AMX,
    where C3D runs ~1.5x faster than fp32 and the detections stay the same;
    benchmarks/RESULTS.md).
    On CUDA the decoded frames are copied to the GPU once and clips are cut there, and a long
    video is decoded by several processes, a time segment each (``decode_processes``).
    """

    def __init__(
        self, model: LoadedModel, config: DetectConfig = DetectConfig(), device: str = "cpu"
    ):
        self.model = model
        self.config = config
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ScnnError(f"device '{device}' requested but CUDA is not available")
        on_gpu = self.device.type == "cuda"
        if self.device.type == "cpu":
            keep_large_allocations()
        precision = config.precision
        if precision == "auto":
            precision = "bf16" if native_bf16(self.device) else "fp32"
        self.bf16 = precision == "bf16"
        self.batch_size = config.batch_size or (
            GPU_BATCH_SIZE if on_gpu else cpu_batch_size(model.proposal, self.bf16)
        )
        self.proposal = inference_network(model.proposal, self.device, self.bf16)
        self.localization = inference_network(model.localization, self.device, self.bf16)
        if config.compile:  # fixed shapes (see _softmax), so each network compiles once
            self.proposal = torch.compile(self.proposal, mode=config.compile, dynamic=False)
            self.localization = torch.compile(self.localization, mode=config.compile, dynamic=False)
        self.decode_processes = config.decode_processes or (
            min(8, max(1, (os.cpu_count() or 1) // 2)) if on_gpu else 1
        )

    @classmethod
    def load(cls, path: str | Path | None = None, *, device: str = "cpu", **settings) -> Detector:
        """Load a model directory (the bundled default model when ``path`` is None)."""
        return cls(
            load_model(BUNDLED_MODEL if path is None else path), DetectConfig(**settings), device
        )

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def with_settings(self, **settings) -> Detector:
        """The same networks with other prediction settings."""
        return Detector(self.model, replace(self.config, **settings), str(self.device))

    def __call__(
        self, video: str | Path, progress: Callable[[int], None] | None = None
    ) -> list[Detection]:
        """Detections in ``video``, sorted by descending score."""
        return self.detections(self.score_windows(video, progress))

    def detections(self, windows: ScoredWindows) -> list[Detection]:
        """Window-length prior, per-class NMS, optional min-score / top-k (method.md §4)."""
        nms, use_prior = self.config.nms_threshold, self.config.use_prior
        use_prior = self.model.use_prior if use_prior is None else use_prior
        return postprocess(
            windows,
            self.model.nms_threshold if nms is None else nms,
            prior=self.model.prior if use_prior else None,
            top_k=self.config.top_k,
            min_score=self.config.min_score,
        )

    def score_windows(
        self, video: str | Path, progress: Callable[[int], None] | None = None
    ) -> ScoredWindows:
        """Every window that passes the proposal network, with its localization class and
        score (background included), streaming the video once. ``progress`` is called with
        the number of frames decoded in each chunk.

        On a CPU a long video is scored in lanes (see :meth:`_lane_ends`): a thread and a time
        segment each, the torch threads shared out among them for the duration of the call.
        """
        ends = self._lane_ends(video)
        if len(ends) == 1:
            chunks = iter_frames_parallel(
                video, self.decode_processes, fps=self.model.fps, size=self.model.clip.frame_size
            )
            chunks = _background_chunks(chunks, pin=self.device.type == "cuda")
            lanes = [self._score_lane(chunks, 0, progress, threading.Event())]
        else:
            lanes = self._score_lanes(video, ends, progress)
        frames = max(lane.frames for lane in lanes)
        shortest = min(self.model.windows.lengths_frames)
        if frames < shortest:
            raise VideoError(
                f"{frames} frames at {self.model.fps:g} fps: shorter than the shortest window "
                f"({shortest} frames)",
                video,
            )
        grid_parts, results, offset = [], [], 0
        for lane in lanes:  # rows index the concatenated grid of all lanes
            grid_parts += lane.grid_parts
            results += [(rows + offset, label, score) for rows, label, score in lane.results]
            offset += sum(len(part) for part in lane.grid_parts)
        return self._scored(Path(video).stem, grid_parts, results)

    def _lane_ends(self, video: str | Path) -> list[int]:
        """The last window end frame of each lane: one lane (``[0]``, to the video's end)
        unless this is a CPU, ``config.lanes`` allows several and the file is long enough to
        give each at least LANE_MIN_S of video.

        Why lanes: on a 2-core machine, one torch thread per network call and one FFmpeg
        thread per segment keep both cores busy without OpenMP's threads waiting on each other
        while FFmpeg holds a core: detection 47x -> 53x real time (benchmarks/RESULTS.md).
        """
        lanes = self.config.lanes or min(torch.get_num_threads(), MAX_LANES)
        if lanes < 2 or self.device.type != "cpu" or not Path(video).is_file():
            return [0]
        total = num_frames(probe(video), self.model.fps)
        lanes = min(lanes, int(total // (LANE_MIN_S * self.model.fps)))
        if lanes < 2:
            return [0]
        # Each lane after the first also decodes a longest window's frames before its own
        # (and from the keyframe before those), at about a third of the cost of scoring a
        # frame (CPU model): the first lane takes that much more (2 lanes, 120 s: 50 -> 53x).
        lead_in = max(self.model.windows.lengths_frames) / 3
        share = (total + (lanes - 1) * lead_in) / lanes
        return [round(share + k * (share - lead_in)) for k in range(lanes - 1)] + [0]

    def _score_lanes(
        self, video: str | Path, ends: list[int], progress: Callable[[int], None] | None
    ) -> list[_Lane]:
        """Score each lane's windows in its own thread, which also decodes its segment (a
        decoding thread per lane was slower: 4 busy threads on 2 cores); the first failure
        stops the others."""
        longest = max(self.model.windows.lengths_frames)
        failed = threading.Event()

        def lane(first_end: int, last_end: int) -> _Lane:
            try:
                chunks = iter_frames(
                    video,
                    self.model.fps,
                    self.model.clip.frame_size,
                    start_frame=max(0, first_end + 1 - longest),
                    stop_frame=last_end or None,
                    decoder_threads=1,
                )
                return self._score_lane(chunks, first_end, progress, failed)
            except BaseException:
                failed.set()
                raise

        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // len(ends)))
        try:
            with ThreadPoolExecutor(len(ends)) as pool:
                starts = [0, *ends[:-1]]
                futures = [pool.submit(lane, a, b) for a, b in zip(starts, ends, strict=True)]
                return [future.result() for future in futures]
        finally:
            torch.set_num_threads(threads)

    def _score_lane(
        self,
        chunks: Iterator[np.ndarray],
        first_end: int,
        progress: Callable[[int], None] | None,
        failed: threading.Event,
    ) -> _Lane:
        """Score the windows ending after frame ``first_end`` (1-based) in ``chunks`` (decoded
        frames), which start at the first frame such a window needs, ``first_end + 2 - longest``
        or 1. ``failed`` set by another lane stops this one."""
        model = self.model
        longest = max(model.windows.lengths_frames)
        buffer = self._on_device(np.zeros((0, *model.clip.frame_size[::-1], 3), np.uint8))
        first_frame = max(0, first_end + 1 - longest) + 1  # frame number of buffer[0], 1-based
        lane = _Lane()
        proposals, survivors = _ClipQueue(), _ClipQueue()
        offset = 0  # windows of earlier chunks, so rows index the lane's concatenated grid
        with torch.inference_mode():
            for chunk in chunks:
                if failed.is_set():
                    return lane
                buffer = _concatenate(buffer, self._on_device(chunk))
                frames_seen = first_frame - 1 + len(buffer)
                previously_seen = max(first_end, frames_seen - len(chunk))
                ready = self._new_windows(frames_seen, previously_seen)
                if len(ready):
                    proposals.push(
                        gather_clips(
                            buffer,
                            ready.start_frame,
                            ready.length_frames,
                            model.clip,
                            train=False,
                            first_frame=first_frame,
                        ),
                        offset + np.arange(len(ready)),
                    )
                    lane.grid_parts.append(ready)
                    offset += len(ready)
                self._flush(proposals, survivors, lane.results, final=False)
                drop = max(0, len(buffer) - longest)
                buffer, first_frame = buffer[drop:], first_frame + drop
                lane.frames = frames_seen
                if progress is not None and frames_seen > previously_seen:
                    progress(frames_seen - previously_seen)
            self._flush(proposals, survivors, lane.results, final=True)
        return lane

    def _new_windows(self, frames_seen: int, previously_seen: int) -> Windows:
        """Windows of the grid whose last frame arrived in the latest chunk.

        A window exists once its last frame does (windows.window_grid), so the grid of the
        frames seen so far is the final grid's windows ending up to that frame.
        """
        grid = window_grid(frames_seen, self.model.windows)
        new = grid.end_frame > previously_seen
        return Windows(grid.length_frames[new], grid.start_frame[new], grid.end_frame[new])

    def _flush(
        self, proposals: _ClipQueue, survivors: _ClipQueue, results: list, final: bool
    ) -> None:
        """Run full batches (and, when ``final``, the remainder) through both networks."""
        threshold = self.config.proposal_threshold
        threshold = self.model.proposal_threshold if threshold is None else threshold
        size = self.batch_size
        while len(proposals) >= size or (final and len(proposals)):
            clips, rows = proposals.pop(size)
            p_action = self._softmax(self.proposal, self._input(clips))[:, 1]
            keep = (p_action >= threshold).numpy()
            survivors.push(clips[torch.from_numpy(keep).to(clips.device)], rows[keep])
        while len(survivors) >= size or (final and len(survivors)):
            clips, rows = survivors.pop(size)
            score, label = self._softmax(self.localization, self._input(clips)).max(dim=1)
            results.append((rows, label.numpy(), score.numpy()))

    def _on_device(self, frames: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """Frames where clips are cut: NumPy on a CPU (its gather is faster there), else the GPU."""
        if self.device.type == "cpu":
            return frames
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        return frames.to(self.device, non_blocking=True)

    def _input(self, clips: torch.Tensor) -> torch.Tensor:
        """A batch of gathered uint8 clips as the networks' input, normalised only now: the
        queues hold uint8 (4x smaller), and a batch's float copy stays in cache."""
        dtype = torch.bfloat16 if self.bf16 else torch.float32
        return normalize_clips(clips, self.model.clip, dtype)

    def _softmax(self, network: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
        count = len(clips)
        if self.config.compile and count < self.batch_size:  # pad: one shape, no recompiling
            padding = clips[:1].expand(self.batch_size - count, *clips.shape[1:])
            clips = torch.cat([clips, padding]).contiguous(memory_format=torch.channels_last_3d)
        logits = network(clips)
        return torch.softmax(logits[:count].float(), dim=1).cpu()

    def _scored(self, video: str, grid_parts: Sequence[Windows], results: list) -> ScoredWindows:
        rows = np.concatenate([r for r, _, _ in results]) if results else np.zeros(0, np.int64)
        labels = np.concatenate([lab for _, lab, _ in results]) if results else rows
        scores = np.concatenate([s for _, _, s in results]) if results else np.zeros(0, np.float64)
        order = np.argsort(rows, kind="stable")
        rows, labels, scores = rows[order], labels[order], scores[order]
        if grid_parts:
            lengths = np.concatenate([g.length_frames for g in grid_parts])[rows]
            starts = np.concatenate([g.start_frame for g in grid_parts])[rows]
            ends = np.concatenate([g.end_frame for g in grid_parts])[rows]
        else:
            lengths = starts = ends = np.zeros(0, np.int64)
        fps = self.model.fps
        return ScoredWindows(
            videos=np.full(len(rows), video, dtype=object),
            window_frames=lengths,
            start_frame=starts,
            end_frame=ends,
            start_s=starts / fps,
            end_s=ends / fps,
            label_index=labels.astype(np.int64),
            score=scores.astype(np.float64),
            classes=self.model.classes,
        )


@dataclass(frozen=True)
class BatchResult:
    """Detections of every video that worked, and why each other one failed."""

    detections: dict[str, list[Detection]]  # video name -> detections sorted by score
    windows: list[ScoredWindows]  # the proposal survivors of each video, in order
    failures: dict[str, str]  # path -> one-line reason

    def all_detections(self) -> list[Detection]:
        """Every video's detections, sorted by descending score (stable across videos)."""
        merged = [d for dets in self.detections.values() for d in dets]
        return sorted(merged, key=lambda d: -d.score)


def detect_videos(
    detector: Detector, videos: Sequence[Path], *, quiet: bool = False
) -> BatchResult:
    """Run ``detector`` on each video; a video that fails is recorded and the rest go on."""
    result = BatchResult({}, [], {})
    overall = tqdm(videos, desc="videos", unit="video", disable=quiet or len(videos) < 2)
    for video in overall:
        try:
            total = num_frames(probe(video), detector.model.fps)
            with tqdm(
                total=total, desc=video.name, unit="frame", leave=False, disable=quiet
            ) as bar:
                windows = detector.score_windows(video, progress=bar.update)
        except ScnnError as exc:
            result.failures[str(video)] = str(exc)
            tqdm.write(f"scnn: failed: {exc}")
            continue
        result.windows.append(windows)
        result.detections[video.stem] = detector.detections(windows)
    return result


def write_results(
    result: BatchResult, out: Path, classes: Sequence[str], windows_csv: Path | None = None
) -> None:
    """Write detections to ``out`` (format by extension), each file atomically.

    Subtitles hold one video: with several videos, ``out``'s folder gets ``<video>.vtt``. A
    video without detections is listed where the format can (ActivityNet JSON). When no video
    was processed nothing is written, so an earlier ``out`` survives a failed run.
    """
    if not result.detections:
        raise ScnnError(
            f"no video could be processed ({len(result.failures)} failed); nothing written", out
        )
    if out.suffix.lower() in SUBTITLE_FORMATS and len(result.detections) != 1:
        for video, detections in result.detections.items():
            write_detections(out.parent / f"{video}{out.suffix}", detections, classes)
    else:
        write_detections(out, result.all_detections(), classes, videos=list(result.detections))
    if windows_csv is not None:
        write_windows_csv(windows_csv, concat_windows(result.windows, tuple(classes)))


# --- many processes: videos shared out by duration, one record per finished video ----------

PARTS_SUFFIX = ".parts"  # OUT.parts/ holds one <video>.json record per finished video
# Ranks that finish their share early wait for the slowest at the final barrier.
SHARDED_WAIT_TIMEOUT_S = 7 * 24 * 3600


def parts_dir(out: Path) -> Path:
    """The folder of per-video records beside ``out``."""
    return out.with_name(out.name + PARTS_SUFFIX)


def detect_sharded(
    detector: Detector,
    videos: Sequence[Path],
    out: Path,
    *,
    world: World = SINGLE,
    windows_csv: Path | None = None,
    quiet: bool = False,
) -> BatchResult | None:
    """``torchrun ... scnn detect``: the videos split over the ranks, balanced by duration.

    Each finished video (detected or failed) is recorded atomically in ``parts_dir(out)``;
    a video whose record holds the same model and settings is not run again, so a killed job
    re-run goes on where it stopped (failed videos are retried). After every rank is done,
    rank 0 merges the records of ``videos`` into ``out`` (and ``windows_csv``) and returns
    the merged result; other ranks return None. One process (``world`` of size 1) runs the
    same way.
    """
    parts = parts_dir(out)
    with distributed.process_group(world, "gloo", timeout_s=SHARDED_WAIT_TIMEOUT_S):
        plan: list[list[str]] = []
        key = ""
        if world.is_main:
            key = _settings_key(detector)
            todo = [v for v in videos if _record(parts, v, key).get("status") != "done"]
            log.info(
                "%d of %d videos already done (%s)", len(videos) - len(todo), len(videos), parts
            )
            durations_s = [_duration_s(v) for v in todo]
            shards = distributed.shard_by_duration(durations_s, world.size)
            plan = [[str(todo[i]) for i in shard] for shard in shards]
        plan, key = distributed.broadcast((plan, key), world)
        for video in map(Path, plan[world.rank]):
            result = detect_videos(detector, [video], quiet=quiet)
            _write_record(parts, video, key, result)
        distributed.barrier(world)
        if not world.is_main:
            return None
        merged = _merge_records(parts, videos, key, detector.classes)
        write_results(merged, out, detector.classes, windows_csv)
        return merged


_SPEED_ONLY = ("batch_size", "compile")  # prediction settings that leave detections alike


def _settings_key(detector: Detector) -> str:
    """A fingerprint of what the detections depend on: both networks, the model's settings
    and the prediction settings."""
    digest = hashlib.sha256()
    model = detector.model
    for network in (model.proposal, model.localization):
        digest.update(state_bytes(network))
    extra = {
        "config": {
            k: v for k, v in dataclasses.asdict(detector.config).items() if k not in _SPEED_ONLY
        },
        "device": detector.device.type,  # precision "auto" depends on it
        "prior": [weights.tolist() for weights in model.prior.values()],
        "thresholds": [model.proposal_threshold, model.nms_threshold, model.use_prior],
        "windows": dataclasses.asdict(model.windows),
        "clip": dataclasses.asdict(model.clip),
        "fps": model.fps,
    }
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def _duration_s(video: Path) -> float:
    """The video's duration for balancing; 0 for one that cannot be probed (it fails fast)."""
    try:
        return probe(video).duration_s
    except ScnnError:
        return 0.0


def _record(parts: Path, video: Path, key: str) -> dict:
    """The record of ``video`` made with settings ``key``; {} when absent, stale or damaged."""
    try:
        record = json.loads((parts / f"{video.stem}.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(record, dict) or record.get("key") != key:
        return {}
    return record


_WINDOW_COLUMNS = {  # ScoredWindows columns kept in a record, with their types
    "window_frames": np.int64,
    "start_frame": np.int64,
    "end_frame": np.int64,
    "start_s": np.float64,
    "end_s": np.float64,
    "label_index": np.int64,
    "score": np.float64,
}


def _write_record(parts: Path, video: Path, key: str, result: BatchResult) -> None:
    record: dict = {"video": str(video), "key": key}
    if result.failures:
        record.update(status="failed", failure=next(iter(result.failures.values())))
    else:
        windows = result.windows[0]
        record.update(
            status="done",
            detections=[
                [d.start_s, d.end_s, d.label, d.score] for d in result.detections[video.stem]
            ],
            windows={name: getattr(windows, name).tolist() for name in _WINDOW_COLUMNS},
        )
    atomic_write_text(parts / f"{video.stem}.json", json.dumps(record) + "\n")


def _merge_records(
    parts: Path, videos: Sequence[Path], key: str, classes: Sequence[str]
) -> BatchResult:
    """The BatchResult one process would have made of ``videos``, from their records."""
    merged = BatchResult({}, [], {})
    for video in videos:
        record = _record(parts, video, key)
        if record.get("status") != "done":
            merged.failures[str(video)] = record.get("failure", f"{video}: no result recorded")
            continue
        name = video.stem
        merged.detections[name] = [Detection(name, *row) for row in record["detections"]]
        columns = {k: np.asarray(record["windows"][k], t) for k, t in _WINDOW_COLUMNS.items()}
        videos_column = np.full(len(columns["score"]), name, dtype=object)
        merged.windows.append(ScoredWindows(videos_column, classes=tuple(classes), **columns))
    return merged
