"""The streaming pipeline of one video (method.md §4): decode → windows → clips → networks →
scored windows; frames and clips in memory bounded by the batch size and the longest window,
not the video (the scored windows are kept, 56 bytes each).

Frames are decoded once, in a background thread; the centre crops of the last longest
window's frames are held. Every window of the grid is scored as soon as its last frame has
arrived: its clip is assembled at once, so frames can be dropped, and clips wait in a queue
until a full batch is ready for the proposal network. Survivors (P(action) ≥ threshold)
queue again for the localization network. Frames and queued clips each live in one array
kept for the whole stream, so memory does not depend on how long it runs. The per-chunk
loop (:func:`chunk_windows`) is apart from what is done with its clips
(:func:`score_segment`), so another consumer can reuse it.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from scnn.clips import (
    InputConvention,
    batch_input_array,
    centre_crop,
    clip_frame_index,
    normalize_clips,
    take_frames,
)
from scnn.compiling import compiled
from scnn.errors import VideoError
from scnn.model import Network, fold_batch_norm
from scnn.modelfile import LoadedModel
from scnn.parallel_decode import iter_frames_parallel
from scnn.precision import exact_fp32
from scnn.records import ScoredWindows
from scnn.runtime import InferenceRuntime, chunk_frames_for
from scnn.video import iter_frames
from scnn.video_source import READ_TIMEOUT_S
from scnn.windows import WindowConfig, Windows, windows_ending_between

DECODE_QUEUE_CHUNKS = 2  # decoded chunks waiting for the network: bounds memory


@dataclass(frozen=True)
class ScoredBatch:
    """One batch out of the localization network: each window's row in its stream's grid,
    its label index (0: background) and that label's probability, and with a boundary network
    its offsets (N, 2; fractions of the window's length; 0 for background windows)."""

    rows: np.ndarray
    label_index: np.ndarray
    score: np.ndarray
    offsets: np.ndarray | None = None


def inference_network(network: Network, device: torch.device, bf16: bool) -> Network:
    """A copy of ``network`` for prediction: eval mode, batch norm folded into the
    convolutions, on ``device``, channels-last, with bf16 weights when ``bf16``.

    bf16 weights rather than autocast: autocast max-pools in fp32, and casting every pooled
    activation to fp32 and back cost ~20 % of the CPU model's time.
    """
    network = fold_batch_norm(copy.deepcopy(network).eval())
    network = network.to(device, memory_format=torch.channels_last_3d)
    return network.to(torch.bfloat16) if bf16 else network


class ClipQueue:
    """Clips and their window rows waiting for one network, flushed a batch at a time.

    The clips live in one array that the queue keeps and reuses: a fresh array per chunk
    left the heap's high-water mark, and so peak memory, to chance (benchmarks/speed/
    RESULTS.md). When it grows it makes room for the clips pushed and ``batch_size − 1``
    waiting, the most a flush leaves, so it grows once or twice, in a stream's first chunks,
    instead of each time a few more clips wait: every growth leaves a hole in the heap.
    """

    def __init__(self, batch_size: int = 1) -> None:
        self.batch_size = batch_size
        self.storage: torch.Tensor | None = None
        self.head = 0  # storage[head : head + len(self)] wait, in order
        self.rows = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def push(self, clips: torch.Tensor, rows: np.ndarray) -> None:
        """Queue a copy of ``clips``, whose windows are ``rows``."""
        if len(rows):
            self._room(rows, clips.shape[1:], clips.device)[:] = clips

    def gather(
        self, frames: np.ndarray | torch.Tensor, frame_index: np.ndarray, rows: np.ndarray
    ) -> None:
        """Queue the uint8 clips ``frames[frame_index]`` (:func:`scnn.clips.take_frames`),
        taken straight into the queue's array, whose windows are ``rows``."""
        if len(rows):
            shape = (*frame_index.shape[1:], *frames.shape[1:])
            if isinstance(frames, torch.Tensor):
                take_frames(frames, frame_index, out=self._room(rows, shape, frames.device))
            else:
                room = self._room(rows, shape, torch.device("cpu"))
                take_frames(frames, frame_index, out=room.numpy())

    def pop(self, size: int) -> tuple[torch.Tensor, np.ndarray]:
        """The first ``size`` clips (fewer if fewer wait) and their rows. The clips are a view
        of the queue's array: use them before the next push."""
        count = min(size, len(self.rows))
        clips = self.storage[self.head : self.head + count]
        rows, self.rows = self.rows[:count], self.rows[count:]
        self.head += count
        return clips, rows

    def _room(self, rows: np.ndarray, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """The place of ``len(rows)`` uint8 clips of ``shape`` after those waiting: the
        waiting clips move to the front, or to a larger array, when they do not fit."""
        waiting, count = len(self.rows), len(rows)
        if self.storage is None or self.head + waiting + count > len(self.storage):
            held = None if self.storage is None else self.storage[self.head : self.head + waiting]
            storage = self.storage
            if storage is None or waiting + count > len(storage):
                size = count + max(waiting, self.batch_size - 1)
                storage = torch.empty((size, *shape), dtype=torch.uint8, device=device)
            elif waiting > self.head:  # the waiting clips would overlap their new place
                held = held.clone()
            if waiting:
                storage[:waiting] = held
            self.storage, self.head = storage, 0
        self.rows = np.concatenate([self.rows, rows])
        start = self.head + waiting
        return self.storage[start : start + count]


@dataclass
class Networks:
    """Both networks as prediction runs them (:func:`inference_network`), and how a batch of
    clips goes through them: the proposal network, then the localization network for the
    windows with P(action) ≥ ``proposal_threshold`` (a threshold ≤ 0 skips the proposal
    network: every window goes to the localization network). A boundary network, when the
    model has one, runs on the windows the localization network labels with an action."""

    proposal: torch.nn.Module
    localization: torch.nn.Module
    boundaries: torch.nn.Module | None
    convention: InputConvention  # on the device
    device: torch.device
    batch_size: int
    dtype: torch.dtype  # of the weights and the normalised clips
    proposal_threshold: float
    padded: bool = False  # every batch padded to batch_size: one shape for torch.compile
    # each thread's normalised batch on a CPU (_input), kept from one batch to the next
    inputs: threading.local = field(default_factory=threading.local, init=False, repr=False)

    @classmethod
    def build(
        cls,
        model: LoadedModel,
        runtime: InferenceRuntime,
        proposal_threshold: float,
        compile_mode: str = "",
    ) -> Networks:
        """Inference copies of ``model``'s networks as ``runtime`` runs them, compiled in
        ``compile_mode`` unless ""."""
        device, bf16 = runtime.device, runtime.bf16
        proposal = compiled(inference_network(model.proposal, device, bf16), compile_mode)
        localization = compiled(inference_network(model.localization, device, bf16), compile_mode)
        boundaries = None
        if model.boundaries is not None:
            boundaries = compiled(inference_network(model.boundaries, device, bf16), compile_mode)
        return cls(
            proposal,
            localization,
            boundaries,
            model.convention.to(device),
            device,
            runtime.batch_size,
            runtime.dtype,
            proposal_threshold,
            padded=bool(compile_mode),  # one shape, so each compiled network compiles once
        )

    def flush(self, proposals: ClipQueue, survivors: ClipQueue, final: bool) -> list[ScoredBatch]:
        """Run full batches (and, when ``final``, the remainder) through both networks; the
        localization network's batches, scored. Each full batch of survivors is scored as
        soon as it is complete, so fewer than two batches ever wait in ``survivors``; with
        every window passing (a threshold ≤ 0), ``proposals`` is scored as it is."""
        size, scored = self.batch_size, []
        if self.proposal_threshold <= 0:  # every window passes: the network is not run
            return self._localize(proposals, final)
        while len(proposals) >= size or (final and len(proposals)):
            clips, rows = proposals.pop(size)
            p_action = self._softmax(self.proposal, self._input(clips))[:, 1]
            keep = (p_action >= self.proposal_threshold).numpy()
            survivors.push(clips[torch.from_numpy(keep).to(clips.device)], rows[keep])
            scored += self._localize(survivors, final=False)
        return scored + self._localize(survivors, final)

    def _localize(self, survivors: ClipQueue, final: bool) -> list[ScoredBatch]:
        """The localization network's full batches of ``survivors`` (and, when ``final``, the
        remainder), scored."""
        size, scored = self.batch_size, []
        while len(survivors) >= size or (final and len(survivors)):
            clips, rows = survivors.pop(size)
            clips = self._input(clips)
            score, label = self._softmax(self.localization, clips).max(dim=1)
            label = label.numpy()
            offsets = None if self.boundaries is None else self._offsets(clips, label > 0)
            scored.append(ScoredBatch(rows, label, score.numpy(), offsets))
        return scored

    def _offsets(self, clips: torch.Tensor, action: np.ndarray) -> np.ndarray:
        """The boundary network's offsets for the ``action`` clips, 0 for the others."""
        offsets = np.zeros((len(clips), 2), np.float32)
        if action.any():
            chosen = clips[torch.from_numpy(action).to(clips.device)]
            chosen = chosen.contiguous(memory_format=torch.channels_last_3d)
            offsets[action] = self._outputs(self.boundaries, chosen).float().cpu().numpy()
        return offsets

    def _input(self, clips: torch.Tensor) -> torch.Tensor:
        """A batch of gathered uint8 clips as the networks' input, normalised only now: the
        queues hold uint8 (4x smaller), and a batch's float copy stays in cache. On a CPU the
        input is written into one array per thread (valid until the thread's next batch),
        so no batch-sized temporary goes through the heap that the lanes share."""
        if self.device.type != "cpu":
            return normalize_clips(clips, self.convention, self.dtype)
        kept = getattr(self.inputs, "batch", None)
        if kept is None:
            kept = batch_input_array(self.batch_size, self.convention, self.dtype)
            self.inputs.batch = kept
        return normalize_clips(clips, self.convention, self.dtype, out=kept)

    def _outputs(self, network: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
        """``network``'s outputs for ``clips`` (padded to a full batch when compiled)."""
        count = len(clips)
        if self.padded and count < self.batch_size:
            padding = clips[:1].expand(self.batch_size - count, *clips.shape[1:])
            clips = torch.cat([clips, padding]).contiguous(memory_format=torch.channels_last_3d)
        with exact_fp32(self.device, self.dtype):
            return network(clips)[:count]

    def _softmax(self, network: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
        return probabilities(self._outputs(network, clips)).cpu()


def probabilities(logits: torch.Tensor) -> torch.Tensor:
    """The softmax of ``logits`` in float64: a float32 softmax rounds every P > 1 − 3e-8 to
    exactly 1, and the windows it ties then lose the order NMS and AP rank them by (a trained
    localization network scores many windows that high; docs/accuracy.md)."""
    return torch.softmax(logits.double(), dim=1)


def _background_chunks(
    chunks: Iterator[np.ndarray], pin: bool = False
) -> Iterator[np.ndarray | torch.Tensor]:
    """Run ``chunks`` in a thread so decoding overlaps the networks; re-raise its errors here.
    With ``pin``, chunks come as page-locked tensors, ready for an asynchronous copy to a GPU."""
    handoff: queue.Queue = queue.Queue(maxsize=DECODE_QUEUE_CHUNKS)
    stop = threading.Event()
    done = object()

    def offer(item: object) -> bool:
        """Put ``item`` in the handoff unless the consumer has stopped (then it never takes
        it: a plain put could wait on a full queue for ever, and the consumer's join with it)."""
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                handoff.put(item, timeout=0.1)
                return True
        return False

    def produce() -> None:
        try:
            for frames in chunks:
                if not offer(torch.from_numpy(frames).pin_memory() if pin else frames):
                    return
            offer(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            offer(exc)

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


def _on_device(
    frames: np.ndarray | torch.Tensor, device: torch.device
) -> np.ndarray | torch.Tensor:
    """Frames where clips are cut: NumPy on a CPU (its gather is faster there), else the GPU."""
    if device.type == "cpu":
        return frames
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    return frames.to(device, non_blocking=True)


def _empty(like: np.ndarray | torch.Tensor, shape: tuple[int, ...]) -> np.ndarray | torch.Tensor:
    """An uninitialised array of ``shape`` in the library, type and device of ``like``."""
    if isinstance(like, torch.Tensor):
        return like.new_empty(shape)
    return np.empty(shape, like.dtype)


class FrameBuffer:
    """The latest frames of a stream, in one array allocated at the first chunk and reused
    (grown only for a larger chunk), so a long stream allocates no fresh frames per chunk.
    It holds ``2 × keep + chunk`` frames: appending moves the ``keep`` frames still needed
    to its front only when the next chunk does not fit behind them, and they never overlap
    their new place there."""

    def __init__(self, keep: int, first_frame: int):
        self.keep = keep  # frames still needed after each chunk
        self.first_frame = first_frame  # frame number (1-based) of frames[0]
        self.storage: np.ndarray | torch.Tensor | None = None
        self.start = self.end = 0

    @property
    def frames(self) -> np.ndarray | torch.Tensor:
        return self.storage[self.start : self.end]

    def append(self, chunk: np.ndarray | torch.Tensor) -> None:
        """Add ``chunk``'s frames after those held (at most ``keep``: see :meth:`drop_old`)."""
        held, count = self.end - self.start, len(chunk)
        if self.storage is None or self.end + count > len(self.storage):
            storage = self.storage
            if storage is None or 2 * self.keep + count > len(storage):
                storage = _empty(chunk, (2 * self.keep + count, *chunk.shape[1:]))
            if held:  # end + count > 2·keep + count, held <= keep: start > keep >= held
                storage[:held] = self.frames
            self.storage, self.start, self.end = storage, 0, held
        self.storage[self.end : self.end + count] = chunk
        self.end += count

    def drop_old(self) -> None:
        """Forget all but the last ``keep`` frames."""
        drop = max(0, self.end - self.start - self.keep)
        self.start += drop
        self.first_frame += drop


@dataclass(frozen=True)
class ChunkWindows:
    """What one decoded chunk brings: the windows whose last frame arrived in it, where their
    clips' frames lie in the frames held (:meth:`queue_clips`), and how far decoding has
    come."""

    windows: Windows
    # the held frames' centre crops, on the networks' device; the next chunk reuses them
    frames: np.ndarray | torch.Tensor
    frame_index: np.ndarray  # (windows, clip_frames): each clip's frames in ``frames``
    frames_seen: int  # frames decoded so far, counted from the video's first
    new_frames: int  # frames of this chunk after ``first_end`` (lead-in frames not counted)

    def queue_clips(self, queue: ClipQueue, rows: np.ndarray) -> None:
        """Gather the windows' clips (uint8) into ``queue``, as ``rows``: before the next chunk."""
        queue.gather(self.frames, self.frame_index, rows)


def chunk_windows(
    chunks: Iterator[np.ndarray | torch.Tensor],
    windows: WindowConfig,
    convention: InputConvention,
    device: torch.device,
    first_end: int = 0,
) -> Iterator[ChunkWindows]:
    """The windows ending after frame ``first_end`` (1-based), chunk by chunk, with where
    their clips' frames lie.

    ``chunks`` (decoded frames) start at the first frame such a window needs,
    ``first_end + 2 - longest`` or 1; no more frames than the longest window are kept, and
    only their centre crops (all that test-time clips take of them), in one array reused
    for the whole stream.
    """
    longest = max(windows.lengths_frames)
    buffer = FrameBuffer(longest, first_frame=max(0, first_end + 1 - longest) + 1)
    for chunk in chunks:
        buffer.append(centre_crop(_on_device(chunk, device), convention))
        frames = buffer.frames
        frames_seen = buffer.first_frame - 1 + len(frames)
        previously_seen = max(first_end, frames_seen - len(chunk))
        ready = windows_ending_between(previously_seen, frames_seen, windows)
        index = clip_frame_index(
            ready.start_frame,
            ready.length_frames,
            convention.clip_frames,
            buffer.first_frame,
            len(frames),
        )
        new_frames = max(0, frames_seen - previously_seen)
        yield ChunkWindows(ready, frames, index, frames_seen, new_frames)
        buffer.drop_old()


class GridRows:
    """A stream's windows by row (counted from its first), kept while a row may still come
    out of the networks: :meth:`forget_before` the earliest row still queued."""

    def __init__(self) -> None:
        self.first_row = 0
        self.columns = np.zeros((3, 0), np.int64)  # length, start, end

    def add(self, windows: Windows) -> None:
        new = np.stack([windows.length_frames, windows.start_frame, windows.end_frame])
        self.columns = np.concatenate([self.columns, new], axis=1)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """``(3, len(rows))``: the length, start and end frame of each row."""
        return self.columns[:, rows - self.first_row]

    def forget_before(self, row: int) -> None:
        self.columns = self.columns[:, row - self.first_row :]
        self.first_row = row


# One scored window: its row in its segment's grid, its place, its label and score.
SCORED_WINDOW = np.dtype(
    [
        ("row", np.int64),
        ("length", np.int64),
        ("start", np.int64),
        ("end", np.int64),
        ("label", np.int64),
        ("score", np.float64),
        ("offsets", np.float32, (2,)),  # the boundary network's, as it gives them (0 without one)
    ]
)


@dataclass
class Segment:
    """What was scored of one stretch of a video: its scored windows, in one array that
    doubles when full (small arrays kept per batch for a whole video fragment the heap),
    the windows of its grid and the frames seen."""

    storage: np.ndarray = field(default_factory=lambda: np.zeros(0, SCORED_WINDOW))
    count: int = 0  # scored windows held: storage[:count]
    windows: int = 0  # windows of the grid, scored or not
    frames: int = 0  # frames seen, counted from the video's first

    @property
    def scored(self) -> np.ndarray:
        return self.storage[: self.count]

    def add(
        self,
        rows: np.ndarray,
        places: np.ndarray,
        labels: np.ndarray,
        scores: np.ndarray,
        offsets: np.ndarray | None = None,
    ) -> None:
        """Append scored windows; ``places`` is ``(3, n)``: length, start and end frame;
        ``offsets`` ``(n, 2)``, a boundary network's (None: 0)."""
        end = self.count + len(rows)
        if end > len(self.storage):
            grown = np.zeros(max(end, 2 * len(self.storage), 1024), SCORED_WINDOW)
            grown[: self.count] = self.scored
            self.storage = grown
        added = self.storage[self.count : end]
        added["row"], added["label"], added["score"] = rows, labels, scores
        added["length"], added["start"], added["end"] = places
        if offsets is not None:
            added["offsets"] = offsets
        self.count = end


def score_segment(
    steps: Iterator[ScoredStep],
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    background: bool = True,
) -> Segment:
    """The scored windows of a stretch of video, gathered from its :func:`scored_steps`.
    ``progress`` is called with each chunk's new frames; ``stop``, once set (by another
    lane), ends the segment early. Without ``background``, the windows the localization
    network labels background are not kept (detection never uses them)."""
    segment, grid = Segment(), GridRows()
    with torch.inference_mode():  # also around the steps' decoding and clips
        for step in steps:
            if stop is not None and stop.is_set():
                return segment
            grid.add(step.windows)
            for batch in step.scored:
                rows, labels, scores = batch.rows, batch.label_index, batch.score
                offsets = batch.offsets
                if not background:
                    action = labels > 0
                    rows, labels, scores = rows[action], labels[action], scores[action]
                    offsets = None if offsets is None else offsets[action]
                segment.add(rows, grid.take(rows), labels, scores, offsets)
            grid.forget_before(int(step.waiting.min(initial=step.first_row + len(step.windows))))
            segment.windows = step.first_row + len(step.windows)
            segment.frames = step.frames_seen
            if progress is not None and step.new_frames:
                progress(step.new_frames)
    return segment


@dataclass(frozen=True)
class ScoredStep:
    """What one decoded chunk leads to: its new windows (rows ``first_row`` on, counted over
    the whole stream), the localization network's batches scored meanwhile (of these or of
    earlier windows), and the rows still queued for either network, not yet scored."""

    windows: Windows
    first_row: int
    scored: list[ScoredBatch]
    waiting: np.ndarray  # rows, in no particular order
    frames_seen: int
    new_frames: int
    final: bool = False  # the step after the last chunk: queues flushed, nothing waits


def scored_steps(
    chunks: Iterator[np.ndarray | torch.Tensor],
    networks: Networks,
    windows: WindowConfig,
    first_end: int = 0,
) -> Iterator[ScoredStep]:
    """:func:`chunk_windows`' steps through both networks, one :class:`ScoredStep` per chunk
    and a final one that scores what the queues hold. The networks see the same batches
    however the steps are consumed, so a consumer that acts step by step (scnn.live) gets
    exactly the scores that :func:`score_segment` gathers."""
    proposals, survivors = ClipQueue(networks.batch_size), ClipQueue(networks.batch_size)
    first_row, frames_seen = 0, 0
    for step in chunk_windows(chunks, windows, networks.convention, networks.device, first_end):
        step.queue_clips(proposals, first_row + np.arange(len(step.windows)))
        with torch.inference_mode():
            scored = networks.flush(proposals, survivors, final=False)
        waiting = np.concatenate([proposals.rows, survivors.rows])
        frames_seen = step.frames_seen
        yield ScoredStep(step.windows, first_row, scored, waiting, frames_seen, step.new_frames)
        first_row += len(step.windows)
    with torch.inference_mode():
        scored = networks.flush(proposals, survivors, final=True)
    none = Windows(*(np.zeros(0, np.int64) for _ in range(3)))
    yield ScoredStep(none, first_row, scored, np.zeros(0, np.int64), frames_seen, 0, final=True)


def video_chunks(
    video: str | Path,
    fps: float,
    convention: InputConvention,
    device: torch.device,
    decode_processes: int = 1,
) -> Iterator[np.ndarray | torch.Tensor]:
    """The decoded chunks of ``video`` as the networks' side reads them: decoded in a
    background thread, page-locked on a GPU. The one place detection decodes with processes:
    ``decode_processes`` > 1 splits the video into time segments, one per process
    (parallel_decode.py), which pays on a GPU, where the networks leave the cores to the
    decoders. Chunks are smaller on a CPU (runtime.CPU_CHUNK_FRAMES)."""
    size, chunk_frames = convention.frame_size, chunk_frames_for(device)
    chunks = iter_frames_parallel(video, decode_processes, fps, size, chunk_frames)
    return _background_chunks(chunks, pin=device.type == "cuda")


def source_steps(
    source: str | Path,
    networks: Networks,
    model: LoadedModel,
    timeout_s: float = READ_TIMEOUT_S,
    each_chunk: Callable[[np.ndarray | torch.Tensor], None] | None = None,
) -> Iterator[ScoredStep]:
    """:func:`scored_steps` of a source decoded once, as :func:`video_chunks` decodes a file
    (one process, a background thread), and never probed first: standard input, a pipe or a URL
    cannot be read twice. A source silent for ``timeout_s`` seconds is given up. ``each_chunk``
    is shown each decoded chunk before the step it leads to. Chunks are as a file's
    (runtime.chunk_frames_for), so live and one offline pass queue the same batches."""
    size, chunk_frames = model.convention.frame_size, chunk_frames_for(networks.device)
    chunks = iter_frames(source, model.fps, size, chunk_frames, timeout_s=timeout_s)
    chunks = _background_chunks(chunks, pin=networks.device.type == "cuda")
    if each_chunk is not None:
        chunks = _shown(chunks, each_chunk)
    yield from scored_steps(chunks, networks, model.windows)


def _shown(
    chunks: Iterator[np.ndarray | torch.Tensor],
    show: Callable[[np.ndarray | torch.Tensor], None],
) -> Iterator[np.ndarray | torch.Tensor]:
    for chunk in chunks:
        show(chunk)
        yield chunk


def scored_windows(
    video: str | Path, segments: Sequence[Segment], model: LoadedModel
) -> ScoredWindows:
    """The windows scored in ``segments`` (in video order) as one ScoredWindows, sorted by
    their place in the grid; a video shorter than the shortest window is a VideoError."""
    frames = max(segment.frames for segment in segments)
    shortest = min(model.windows.lengths_frames)
    if frames < shortest:
        raise VideoError(
            f"{frames} frames at {model.fps:g} fps: shorter than the shortest window "
            f"({shortest} frames)",
            video,
        )
    scored, offset = [], 0
    for segment in segments:  # rows index the concatenated grid of all segments
        part = segment.scored.copy()
        part["row"] += offset
        scored.append(part)
        offset += segment.windows
    windows = np.concatenate(scored)
    windows = windows[np.argsort(windows["row"], kind="stable")]
    return ScoredWindows.of_frames(
        Path(video).stem,
        windows["length"].copy(),
        windows["start"].copy(),
        windows["end"].copy(),
        model.fps,
        windows["label"].copy(),
        windows["score"].copy(),
        model.classes,
        None if model.boundaries is None else windows["offsets"].copy(),
    )
