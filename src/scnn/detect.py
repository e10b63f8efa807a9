"""Detection with a trained S-CNN (method.md §4): the model directory and the prediction
settings, a video's scored windows (pipeline.py, or lanes.py for a long video on a CPU), and
the detections made of them (postprocess.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from scnn.boundary_clips import MAX_ROUNDS, BoundaryClips, network_offsets
from scnn.boundary_refiner import BoundaryRefiner, refine_in_video
from scnn.compiling import check_compile_mode, compiled
from scnn.errors import ModelError, ScnnError
from scnn.lanes import lane_ends, score_lanes
from scnn.modelfile import LoadedModel, load_model
from scnn.pipeline import (
    Networks,
    inference_network,
    score_segment,
    scored_steps,
    scored_windows,
    video_chunks,
)
from scnn.postprocess import PostprocessSettings, Refine
from scnn.records import Detection, ScoredWindows
from scnn.runtime import PRECISIONS, InferenceRuntime, chunk_frames_for
from scnn.video import video_finder

BUNDLED_MODEL = Path(__file__).parent / "models" / "default"


@dataclass(frozen=True)
class DetectConfig:
    """Prediction settings; ``None`` takes the model directory's default."""

    proposal_threshold: float | None = None
    nms_threshold: float | None = None
    min_score: float | None = None
    top_k: int | None = None
    batch_size: int | None = None  # None: by device (runtime.InferenceRuntime)
    use_prior: bool | None = None  # weight scores by the window-length prior
    vote_iou: float | None = None  # boundary voting after NMS (postprocess.vote_boundaries); 0: off
    precision: str = "auto"  # "fp32", "bf16", or "auto": bf16 where the hardware computes in it
    compile: str = ""  # torch.compile mode for every network (e.g. "default"); "": eager
    # Processes decoding one long video by time segments (parallel_decode.py). None: 1 on a
    # CPU, where the networks need every core; on a GPU, one per 2 cores, at most 8.
    decode_processes: int | None = None
    # Lanes scoring one long video on a CPU, a time segment each (lanes.lane_ends).
    # 0: one per torch thread, at most lanes.MAX_LANES; 1: none.
    lanes: int = 0
    # rounds of the boundary-clip network on each detection (boundary_clips.py); 0: off
    boundary_clip_rounds: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ScnnError(f"precision '{self.precision}' is not one of {', '.join(PRECISIONS)}")
        check_compile_mode(self.compile)
        rounds = self.boundary_clip_rounds
        if rounds is not None and (isinstance(rounds, bool) or not 0 <= rounds <= MAX_ROUNDS):
            raise ScnnError(f"boundary-clip rounds {rounds} is not in 0..{MAX_ROUNDS}")


class Detector:
    """A trained S-CNN: ``Detector.load(path)(video)`` gives the video's detections.

    The networks run as inference copies (:class:`pipeline.Networks`), in bf16 where the
    hardware computes in bf16 (``precision="auto"``: CUDA, or a CPU with AVX512-BF16 or AMX,
    where C3D runs ~1.5x faster than fp32 and the detections stay the same;
    benchmarks/speed/RESULTS.md).
    On CUDA the decoded frames are copied to the GPU once and clips are cut there, and a long
    video is decoded by several processes, a time segment each (``decode_processes``); on a
    CPU a long video is scored in lanes (lanes.py).
    """

    def __init__(
        self,
        model: LoadedModel,
        config: DetectConfig = DetectConfig(),
        device: str | torch.device = "cpu",
    ):
        self.model = model
        self.config = config
        self.runtime = InferenceRuntime.choose(
            model.proposal, device, config.precision, config.batch_size, config.decode_processes
        )
        threshold = config.proposal_threshold
        self.networks = Networks.build(
            model,
            self.runtime,
            model.proposal_threshold if threshold is None else threshold,
            config.compile,
        )
        self.boundary_clips = self._boundary_clips()

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def bf16(self) -> bool:
        return self.runtime.bf16

    @property
    def batch_size(self) -> int:
        return self.runtime.batch_size

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, device: str | torch.device = "cpu", **settings
    ) -> Detector:
        """Load a model directory (the bundled default model when ``path`` is None)."""
        return cls(
            load_model(BUNDLED_MODEL if path is None else path), DetectConfig(**settings), device
        )

    @property
    def classes(self) -> tuple[str, ...]:
        return self.model.classes

    def with_settings(self, **settings) -> Detector:
        """The same networks with other prediction settings."""
        return Detector(self.model, replace(self.config, **settings), self.device)

    def __call__(
        self, video: str | Path, progress: Callable[[int], None] | None = None
    ) -> list[Detection]:
        """Detections in ``video``, sorted by descending score (moved by the model's boundary
        clips where it has them: :meth:`refine`)."""
        found = self.detections(self.score_windows(video, progress, background=False))
        return self.refine(video, found)

    def _boundary_clips(self) -> BoundaryClips | None:
        """The model's boundary-clip network as an inference copy, with the rounds the
        config asks (the model's by default); None when it has none or 0 rounds are asked."""
        clips, rounds = self.model.boundary_clips, self.config.boundary_clip_rounds
        if rounds is not None and rounds > 0 and clips is None:
            raise ModelError(
                "the model has no boundary-clip network: boundary clips cannot run",
                self.model.directory,
            )
        if clips is None or rounds == 0:
            return None
        # each detection's clips a batch of their own (boundary_refiner.py): one shape
        network = compiled(
            inference_network(clips.network, self.device, self.bf16), self.config.compile
        )
        return replace(clips, network=network, rounds=clips.rounds if rounds is None else rounds)

    def boundary_refiner(self) -> BoundaryRefiner | None:
        """A streaming refiner of detections by the boundary clips (None without them)."""
        clips = self.boundary_clips
        if clips is None:
            return None
        model = self.model
        return BoundaryRefiner(clips, network_offsets(clips.network), model.convention, model.fps)

    def refine(self, video: str | Path, detections: list[Detection]) -> list[Detection]:
        """``detections`` of ``video`` with each start and end moved by the boundary clips,
        reading the video a second time (boundary_refiner.refine_in_video), in the chunks of
        the first pass, in the same order; as they are without boundary clips."""
        clips, model = self.boundary_clips, self.model
        if clips is None:
            return detections
        offsets_of = network_offsets(clips.network)
        chunk_frames = chunk_frames_for(self.device)
        return refine_in_video(
            video, detections, clips, offsets_of, model.convention, model.fps, chunk_frames
        )

    def refine_in_folder(self, videos_dir: Path) -> Refine:
        """:meth:`refine` by video name, the video's file found in ``videos_dir``, listed once
        (none there is a VideoError naming it)."""
        file_of = video_finder(videos_dir)
        return lambda video, found: self.refine(file_of(video), found)

    def detections(self, windows: ScoredWindows) -> list[Detection]:
        """Window-length prior, per-class NMS, optional min-score / top-k (method.md §4)."""
        return self.postprocess_settings().detections(windows)

    def postprocess_settings(self) -> PostprocessSettings:
        """The post-processing settings, the model's defaults where the config leaves them."""
        nms, use_prior = self.config.nms_threshold, self.config.use_prior
        use_prior = self.model.use_prior if use_prior is None else use_prior
        vote_iou = self.model.vote_iou if self.config.vote_iou is None else self.config.vote_iou
        return PostprocessSettings(
            nms_iou=self.model.nms_threshold if nms is None else nms,
            prior=self.model.prior if use_prior else None,
            top_k=self.config.top_k,
            min_score=self.config.min_score,
            vote_iou=vote_iou,
        )

    def score_windows(
        self,
        video: str | Path,
        progress: Callable[[int], None] | None = None,
        total_frames: int | None = None,
        background: bool = True,
    ) -> ScoredWindows:
        """Every window that passes the proposal network, with its localization class and
        score, streaming the video once. ``progress`` is called with the number of frames
        decoded in each chunk; ``total_frames``, the video's frame count at the model's fps,
        spares the lane split a probe when the caller has one. Without ``background``, the
        windows labelled background are left out: detection never uses them, and on a long
        video they are most of the memory that grows with it.
        """
        ends = [0]
        if self.device.type == "cpu":
            ends = lane_ends(video, self.config.lanes, self.model, total_frames)
        if len(ends) > 1:
            return score_lanes(video, ends, self.networks, self.model, progress, background)
        model, device = self.model, self.device
        chunks = video_chunks(
            video, model.fps, model.convention, device, self.runtime.decode_processes
        )
        steps = scored_steps(chunks, self.networks, model.windows)
        return scored_windows(video, [score_segment(steps, progress, None, background)], model)
