"""Speed of every stage of scnn next to a straightforward baseline and the hardware bound.

Issue 6. Each figure is printed with a baseline measured in the same run (fp32, eager,
contiguous memory, frames decoded then clips cut serially, one window scale at a time) and
with the hardware bound: the stage's FLOPs divided by a matrix-multiply rate measured in the
same run. The model has random weights (speed does not depend on them); its proposal
threshold is set so that PASS_FRACTION of the windows reach the localization network.

    python3 benchmarks/speed.py --model cpu --threads 2            # the CPU default model
    python3 benchmarks/speed.py --model faithful --device cuda --compile default
    python3 benchmarks/speed.py --model cpu --threads 2 --sections memory

Sections: matmul, decode, clips, networks, detect, train, memory (peak RSS of detection on a
10-minute and a 2-hour video, each in a fresh process). Videos and model directories are
made once under --work and reused.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import torch

from scnn.allocator import keep_large_allocations
from scnn.clips import ClipConfig, assemble_clips, sample_frame_indices
from scnn.config import load_config
from scnn.dataset import DataConfig
from scnn.detect import Detector
from scnn.fileio import atomic_write_text
from scnn.loss import overlap_loss
from scnn.model import C3D, ModelOptions, build_network, clip_gflops
from scnn.modelfile import load_model, save_model
from scnn.parallel_decode import iter_frames_parallel
from scnn.pipeline import cpu_batch_size, inference_network
from scnn.postprocess import postprocess
from scnn.precision import native_bf16
from scnn.records import ScoredWindows
from scnn.stages import LOCALIZATION, prepare_data
from scnn.train import TRAIN_LOG, train
from scnn.video import FPS, iter_frames, num_frames, probe, read_frames
from scnn.windows import WindowConfig, window_grid

NUM_CLASSES = 20
PASS_FRACTION = 0.25  # windows reaching the localization network (realistic: 15-30 %)
SECTIONS = ("matmul", "decode", "clips", "networks", "detect", "train", "memory")
DEFAULT_SECTIONS = ("matmul", "decode", "clips", "networks", "detect", "train")
MEMORY_VIDEOS_S = (600, 7200)  # 10 minutes and 2 hours
MEMORY_SOURCE_SIZE = (96, 72)  # small source frames: the 2-hour video encodes in about a minute


@dataclass(frozen=True)
class ModelSize:
    options: ModelOptions
    clip: ClipConfig


MODELS = {
    "tiny": ModelSize(
        ModelOptions(width=1 / 16, batch_norm=True), ClipConfig(frame_size=(43, 32), crop_size=32)
    ),
    "cpu": ModelSize(  # the CPU default (configs/synthetic_cpu.toml)
        ModelOptions(width=0.125, dropout=0.3, batch_norm=True),
        ClipConfig(frame_size=(86, 64), crop_size=56, std_rgb=(58.0, 57.0, 57.0)),
    ),
    "faithful": ModelSize(ModelOptions(), ClipConfig()),
}


@dataclass(frozen=True)
class Row:
    """One printed figure: ours, the same-run baseline, and the hardware bound."""

    stage: str
    setting: str
    value: float
    unit: str
    baseline: float | None = None
    bound: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return {
            **self.__dict__,
            "speedup": self.value / self.baseline if self.baseline else None,
            "of_bound": self.value / self.bound if self.bound else None,
        }


# --- timing ---------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_rate(
    work: Callable[[], object], items: int, device: torch.device, seconds: float, rounds: int = 3
) -> float:
    """Items per second of the best of ``rounds`` timed rounds after one warm-up call: the
    least disturbed estimate on a machine shared with others."""
    work()
    sync(device)
    best = 0.0
    for _ in range(rounds):
        calls, start = 0, time.perf_counter()
        while True:
            work()
            calls += 1
            if device.type == "cuda" and calls % 8:
                continue
            sync(device)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / rounds:
                break
        best = max(best, calls * items / elapsed)
    return best


def matmul_flops(device: torch.device, dtype: torch.dtype, seconds: float) -> float:
    """FLOP/s of square matrix products, the roofline every conv is held against."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    return best_rate(lambda: a @ b, 2 * n**3, device, seconds)


# --- inputs: a synthetic video and a random-weight model directory ---------------------------


def make_video(path: Path, duration_s: float, size: tuple[int, int]) -> Path:
    """An H.264 video with a textured background panning and a box moving across it, so the
    encoder has real motion to code (decode cost close to a real video's)."""
    if path.exists():
        return path
    width, height = size
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height * 2, width * 2, 3), np.uint8)
    texture = np.repeat(np.repeat(texture[::4, ::4], 4, 0), 4, 1)  # blocky: compresses sanely
    tmp = path.with_suffix(".part.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(int(FPS)))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "23"}
        for index in range(round(duration_s * FPS)):
            x, y = index % width, (index // 3) % height
            picture = texture[y : y + height, x : x + width].copy()
            bx = (index * 3) % (width - width // 4)
            picture[height // 3 : height // 3 + height // 4, bx : bx + width // 4] = (255, 40, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    tmp.rename(path)
    return path


def make_model_dir(path: Path, size: ModelSize, video: Path) -> tuple[Path, float]:
    """A random-weight model directory, and the proposal threshold that lets PASS_FRACTION of
    the video's windows through."""
    torch.manual_seed(0)
    windows = WindowConfig()
    if not (path / "model.json").exists():
        save_model(
            path,
            proposal=build_network(2, size.options, size.clip).eval(),
            localization=build_network(NUM_CLASSES + 1, size.options, size.clip).eval(),
            classes=tuple(f"class{k:02d}" for k in range(NUM_CLASSES)),
            prior={length: np.ones(NUM_CLASSES) for length in windows.lengths_frames},
            options=size.options,
            windows=windows,
            clip=size.clip,
            config={},
            metrics={},
        )
    model = load_model(path)
    frames = np.concatenate(list(islice(iter_frames(video, size=size.clip.frame_size), 8)))
    grid = window_grid(len(frames), windows)
    pick = np.linspace(0, len(grid) - 1, min(len(grid), 128)).round().astype(int)
    clips = assemble_clips(
        frames, grid.start_frame[pick], grid.length_frames[pick], size.clip, False
    )
    with torch.inference_mode():
        p_action = torch.softmax(model.proposal(clips), 1)[:, 1].numpy()
    return path, float(np.quantile(p_action, 1 - PASS_FRACTION))


# --- the straightforward baseline -------------------------------------------------------------


def baseline_clip(frames: np.ndarray, start: int, length: int, clip: ClipConfig) -> torch.Tensor:
    """One window's clip, cut frame by frame (the obvious loop)."""
    height, width = frames.shape[1:3]
    top, left, crop = (height - clip.crop_size) // 2, (width - clip.crop_size) // 2, clip.crop_size
    pictures = [
        frames[i - 1, top : top + crop, left : left + crop]
        for i in sample_frame_indices(start, length, clip.clip_frames)
    ]
    tensor = torch.from_numpy(np.stack(pictures)).permute(3, 0, 1, 2).float()
    mean = torch.tensor(clip.mean_rgb).view(3, 1, 1, 1)
    return (tensor - mean) / torch.tensor(clip.std_rgb).view(3, 1, 1, 1)


def baseline_detect(model_dir: Path, video: Path, threshold: float, batch: int, device) -> int:
    """Decode the whole video, then for each window length: cut clips, run the proposal
    network and the localization network on the survivors (fp32, eager, contiguous), then
    post-process. Returns the number of detections."""
    model = load_model(model_dir)
    proposal, localization = model.proposal.to(device), model.localization.to(device)
    frames = read_frames(video, fps=model.fps, size=model.clip.frame_size)
    grid = window_grid(len(frames), model.windows)
    kept_rows, labels, scores = [], [], []
    with torch.inference_mode():
        for length in model.windows.lengths_frames:
            rows = np.flatnonzero(grid.length_frames == length)
            for first in range(0, len(rows), batch):
                part = rows[first : first + batch]
                clips = (
                    assemble_clips(
                        frames, grid.start_frame[part], grid.length_frames[part], model.clip, False
                    )
                    .contiguous()
                    .to(device)
                )
                keep = (torch.softmax(proposal(clips), 1)[:, 1] >= threshold).cpu().numpy()
                if keep.any():
                    score, label = torch.softmax(localization(clips[keep]), 1).max(1)
                    kept_rows.append(part[keep])
                    labels.append(label.cpu().numpy())
                    scores.append(score.cpu().numpy())
    rows = np.concatenate(kept_rows) if kept_rows else np.zeros(0, np.int64)
    windows = ScoredWindows(
        videos=np.full(len(rows), video.stem, dtype=object),
        window_frames=grid.length_frames[rows],
        start_frame=grid.start_frame[rows],
        end_frame=grid.end_frame[rows],
        start_s=grid.start_frame[rows] / model.fps,
        end_s=grid.end_frame[rows] / model.fps,
        label_index=np.concatenate(labels).astype(np.int64) if labels else rows,
        score=np.concatenate(scores).astype(np.float64) if scores else rows * 0.0,
        classes=model.classes,
    )
    return len(postprocess(windows, model.nms_threshold, prior=model.prior))


# --- sections ---------------------------------------------------------------------------------


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.device = torch.device(args.device)
        self.size = MODELS[args.model]
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.rows: list[Row] = []
        self.extra: dict = {}
        self.source = source = tuple(int(v) for v in args.source_size.split("x"))
        self.video = make_video(
            self.work / f"video_{args.video_s:g}s_{source[0]}x{source[1]}.mp4", args.video_s, source
        )
        self.model_dir, self.threshold = make_model_dir(
            self.work / f"model_{args.model}", self.size, self.video
        )
        with torch.device("meta"):
            network = C3D(2, width=self.size.options.width, crop_size=self.size.clip.crop_size)
        self.gflops = clip_gflops(network)
        on_gpu = self.device.type == "cuda"
        self.batch = args.batch or (
            256 if on_gpu else cpu_batch_size(network, native_bf16(self.device))
        )
        self.baseline_batch = 256 if on_gpu else 64
        self.rate = {"fp32": None, "bf16": None}

    def add(self, row: Row) -> None:
        self.rows.append(row)
        print(format_row(row), flush=True)

    def bound(self, precision: str, flops_per_item: float) -> float | None:
        rate = self.rate.get(precision)
        return rate / flops_per_item if rate else None

    def matmul(self) -> None:
        seconds = self.args.seconds
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            self.rate[precision] = matmul_flops(self.device, dtype, seconds)
            self.add(Row("matmul", precision, self.rate[precision] / 1e9, "GFLOP/s"))

    def decode(self) -> None:
        """Decode + scale to the model's frame size: the obvious PyAV loop (a new scaling
        context per frame, FFmpeg's default threads, no resampling), ``iter_frames``, and
        ``iter_frames_parallel`` with one process per core (60 s segments)."""
        size = self.size.clip.frame_size
        processes = self.args.decode_processes or os.cpu_count() or 1

        def baseline() -> int:
            count = 0
            with av.open(str(self.video)) as container:
                for frame in container.decode(video=0):
                    frame.to_ndarray(width=size[0], height=size[1], format="rgb24")
                    count += 1
            return count

        runs = (
            ("baseline: PyAV loop, frame.to_ndarray(width, height)", baseline),
            ("iter_frames", lambda: sum(map(len, iter_frames(self.video, size=size)))),
            (
                f"iter_frames_parallel, {processes} processes",
                lambda: sum(map(len, iter_frames_parallel(self.video, processes, size=size))),
            ),
        )
        base = None
        for name, run in runs:
            start = time.perf_counter()
            frames = run()
            rate = frames / (time.perf_counter() - start)
            base = base or rate
            self.add(
                Row(
                    "decode",
                    f"{size[0]}x{size[1]}, {name}",
                    rate,
                    "frames/s",
                    base,
                    note=f"{rate / FPS:.0f}x real time",
                )
            )

    def clips(self) -> None:
        clip = self.size.clip
        frames = read_frames(self.video, size=clip.frame_size)[:768]
        grid = window_grid(len(frames), WindowConfig())
        pick = np.resize(np.arange(len(grid)), self.batch)
        starts, lengths = grid.start_frame[pick], grid.length_frames[pick]
        base = best_rate(
            lambda: torch.stack(
                [baseline_clip(frames, s, n, clip) for s, n in zip(starts, lengths, strict=True)]
            ).to(self.device),
            self.batch,
            self.device,
            self.args.seconds,
        )
        source = torch.from_numpy(frames).to(self.device) if self.device.type == "cuda" else frames
        ours = best_rate(
            lambda: assemble_clips(source, starts, lengths, clip, False),
            self.batch,
            self.device,
            self.args.seconds,
        )
        where = "on the GPU" if self.device.type == "cuda" else "NumPy gather"
        self.add(Row("clips", f"batch {self.batch}, {where}", ours, "clips/s", base))

    def _network_rate(
        self, network, batch: int, channels_last: bool, dtype=torch.float32, autocast=False
    ) -> float:
        memory = torch.channels_last_3d if channels_last else torch.contiguous_format
        network = network.to(self.device, memory_format=memory).eval()
        crop = self.size.clip.crop_size
        x = torch.randn(batch, 3, 16, crop, crop, device=self.device, dtype=dtype)
        x = x.contiguous(memory_format=memory)

        def forward():
            with (
                torch.inference_mode(),
                torch.autocast(self.device.type, torch.bfloat16, enabled=autocast),
            ):
                return network(x)

        return best_rate(forward, batch, self.device, self.args.seconds)

    def networks(self) -> None:
        """The proposal network alone: the baseline, then the steps to the Detector's own
        networks (``inference_network``: batch norm folded, channels-last, bf16 weights)."""
        model = load_model(self.model_dir)
        flops = self.gflops * 1e9
        base = self._network_rate(copy.deepcopy(model.proposal), self.baseline_batch, False)
        self.add(
            Row(
                "proposal",
                f"fp32 eager contiguous, batch {self.baseline_batch} (baseline)",
                base,
                "clips/s",
                base,
                self.bound("fp32", flops),
            )
        )
        fp32 = inference_network(model.proposal, self.device, bf16=False)
        bf16 = inference_network(model.proposal, self.device, bf16=True)
        runs = [
            ("fp32", "fp32 channels_last_3d, BN folded", fp32, torch.float32, False),
            ("autocast", "bf16 autocast channels_last_3d, BN folded", fp32, torch.float32, True),
            (
                "bf16",
                "bf16 weights channels_last_3d, BN folded (Detector)",
                bf16,
                torch.bfloat16,
                False,
            ),
        ]
        for key, name, network, dtype, autocast in runs:
            value = self._network_rate(network, self.batch, True, dtype, autocast)
            precision = "fp32" if key == "fp32" else "bf16"
            self.add(
                Row(
                    "proposal",
                    f"{name}, batch {self.batch}",
                    value,
                    "clips/s",
                    base,
                    self.bound(precision, flops),
                )
            )
            self.extra[f"proposal_{key}"] = value
        if self.args.compile:
            start = time.perf_counter()
            compiled = torch.compile(bf16, mode=self.args.compile, dynamic=False)
            self._network_rate(compiled, self.batch, True, torch.bfloat16)  # compiles
            compile_s = time.perf_counter() - start
            value = self._network_rate(compiled, self.batch, True, torch.bfloat16)
            self.add(
                Row(
                    "proposal",
                    f"bf16 weights channels_last_3d compile({self.args.compile}), "
                    f"batch {self.batch}",
                    value,
                    "clips/s",
                    base,
                    self.bound("bf16", flops),
                    f"compiled in {compile_s:.0f} s",
                )
            )
            self.extra["proposal_compiled"] = value
        use_bf16 = native_bf16(self.device)
        localization = inference_network(model.localization, self.device, use_bf16)
        dtype = torch.bfloat16 if use_bf16 else torch.float32
        value = self._network_rate(localization, self.batch, True, dtype)
        self.add(
            Row(
                "localization",
                f"Detector's ({'bf16' if use_bf16 else 'fp32'}), batch {self.batch}",
                value,
                "clips/s",
                None,
                self.bound("bf16" if use_bf16 else "fp32", flops),
            )
        )

    def _allocator_rows(self, base: float) -> None:
        """The network's training step alone in two fresh processes: glibc's default malloc,
        then scnn.allocator's settings (this process, like scnn.train, has them from the
        start)."""
        for mode, name in (
            ("default", "glibc's default malloc"),
            ("keep", "keep_large_allocations"),
        ):
            command = [*self._child_command(), "--train-rate-of", mode]
            rate = float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            self.add(
                Row(
                    "train",
                    f"bf16 channels_last_3d, model only, batch {train_batch(self.device)}, "
                    f"fresh process, {name}",
                    rate,
                    "clips/s",
                    base,
                    self.bound("bf16", 3 * self.gflops * 1e9),
                )
            )

    def _child_command(self) -> list[str]:
        """This script, in a child process, on this run's model and settings."""
        return [
            sys.executable,
            __file__,
            "--work",
            str(self.work),
            "--model",
            self.args.model,
            "--device",
            self.args.device,
            "--threads",
            str(self.args.threads or 0),
            "--seconds",
            str(self.args.seconds),
            "--batch",
            str(self.batch),
            "--train-steps",
            str(self.args.train_steps),
        ]

    def detect(self) -> None:
        duration_s = num_frames(probe(self.video)) / FPS
        start = time.perf_counter()
        found = baseline_detect(
            self.model_dir, self.video, self.threshold, self.baseline_batch, self.device
        )
        base_speed = duration_s / (time.perf_counter() - start)
        self.add(
            Row(
                "detect",
                "baseline: serial decode, per scale, fp32 eager",
                base_speed,
                "x real time",
                base_speed,
                note=f"{found} detections",
            )
        )
        settings = [("fp32", "fp32", ""), ("auto", "auto", "")]
        if self.args.compile:
            settings.append((f"auto, compile({self.args.compile})", "auto", self.args.compile))
        windows_per_s_of_video = len(window_grid(round(duration_s * FPS))) / duration_s
        scored = {}
        for name, precision, mode in settings:
            detector = Detector.load(
                self.model_dir,
                device=str(self.device),
                proposal_threshold=self.threshold,
                batch_size=self.args.batch,
                precision=precision,
                compile=mode,
            )
            if mode:  # compile outside the timed run, on a short video
                detector(make_video(self.work / "warmup_30s.mp4", 30, self.source))
            start = time.perf_counter()
            windows = detector.score_windows(self.video)
            detections = detector.detections(windows)
            wall_s = time.perf_counter() - start
            speed = duration_s / wall_s
            proposal_clips_s = windows_per_s_of_video * speed
            network_clips_s = (windows_per_s_of_video * duration_s + len(windows)) / wall_s
            model_only = self.extra.get(
                "proposal_compiled" if mode else f"proposal_{'bf16' if detector.bf16 else 'fp32'}"
            )
            note = (
                f"{len(detections)} detections; {len(windows)} windows to localization; "
                f"proposal {proposal_clips_s:.0f} clips/s, both networks "
                f"{network_clips_s:.0f} clips/s"
            )
            if model_only:
                note += (
                    f" = {proposal_clips_s / model_only:.0%} / "
                    f"{network_clips_s / model_only:.0%} of the model-only rate"
                )
            self.add(
                Row(
                    "detect",
                    f"Detector {name} ({'bf16' if detector.bf16 else 'fp32'}), "
                    f"batch {detector.batch_size}",
                    speed,
                    "x real time",
                    base_speed,
                    self.bound(
                        "bf16" if detector.bf16 else "fp32",
                        self.gflops * 1e9 * (windows_per_s_of_video + len(windows) / duration_s),
                    ),
                    note,
                )
            )
            scored[precision] = (windows, detections)
        if "fp32" in scored and "auto" in scored:
            self.extra["fp32_vs_auto"] = agreement(scored["fp32"], scored["auto"])
            print("fp32 vs auto precision:", json.dumps(self.extra["fp32_vs_auto"]), flush=True)

    def train(self) -> None:
        """``scnn.train.train`` itself (localization stage: K + 1 outputs and the overlap
        loss), in the straightforward setting and in its defaults, one step per log record."""
        annotations = self.work / "train_annotations.json"
        duration = self.args.video_s
        starts = np.arange(2.0, duration - 8.0, 10.0)
        database = {
            self.video.stem: {
                "subset": "training",
                "duration": duration,
                "annotations": [
                    {"segment": [start, start + 1.0 + (k % 6)], "label": f"class{k % 5}"}
                    for k, start in enumerate(starts)
                ],
            }
        }
        atomic_write_text(annotations, json.dumps({"database": database}))
        on_gpu = self.device.type == "cuda"
        base_config = replace(
            load_config("synthetic_cpu", {"device": str(self.device), "log_every": 1}),
            model=self.size.options,
            clip=self.size.clip,
            batch_size=train_batch(self.device),
            steps=self.args.train_steps,
            checkpoint_every=self.args.train_steps,
            data=DataConfig(val_samples=0),
        )
        data = prepare_data(
            base_config, annotations, self.video.parent, self.work / "cache", progress=False
        )
        stage = replace(LOCALIZATION, init_from=None)
        flops = 3 * self.gflops * 1e9  # forward + backward ≈ 3 forwards
        bf16 = native_bf16(self.device)
        workers = 8 if on_gpu else base_config.workers  # the CPU config loads in-process
        defaults = f"{'bf16' if bf16 else 'fp32'} channels_last_3d, {workers} worker(s)"
        runs = [
            ("fp32 eager contiguous, loader in-process (baseline)", False, False, 0, ""),
            (f"defaults: {defaults}", True, True, workers, ""),
        ]
        if self.args.train_compile:
            mode = self.args.train_compile
            runs.append((f"compiled: {defaults}, compile({mode})", True, True, workers, mode))
        base = None
        for name, amp, channels_last, num_workers, mode in runs:
            config = replace(
                base_config,
                amp=amp,
                channels_last=channels_last,
                workers=num_workers,
                compile=mode,
            )
            out = self.work / "train_runs" / name.split(":")[0].split(" ")[0]
            train(stage, config, data, out, progress=False)
            log = [json.loads(line) for line in (out / stage.name / TRAIN_LOG).open()]
            seconds = [config.batch_size / record["clips_per_s"] for record in log[3:]]
            rate = config.batch_size / statistics.median(seconds)
            base = base or rate
            self.add(
                Row(
                    "train",
                    f"scnn.train, {name}, batch {config.batch_size}",
                    rate,
                    "clips/s",
                    base,
                    self.bound("bf16" if amp and bf16 else "fp32", flops),
                    f"slowest step {max(seconds) / statistics.median(seconds):.1f}x the median",
                )
            )
        if on_gpu:  # the network alone, batch resident on the GPU (the reference)
            rate = model_train_rate(
                load_model(self.model_dir), self.size.clip, self.device, 64, self.args.train_steps
            )
            self.add(
                Row(
                    "train",
                    "bf16 channels_last_3d, model only, batch 64",
                    rate,
                    "clips/s",
                    base,
                    self.bound("bf16", flops),
                )
            )
        else:
            self._allocator_rows(base)

    def memory(self) -> None:
        results = {}
        for duration_s in MEMORY_VIDEOS_S:
            video = make_video(
                self.work / f"memory_{duration_s}s.mp4", duration_s, MEMORY_SOURCE_SIZE
            )
            command = [*self._child_command(), "--peak-rss-of", str(video)]
            start = time.perf_counter()
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            peak_mb = float(output.split()[-1])
            results[duration_s] = peak_mb
            self.add(
                Row(
                    "memory",
                    f"detection peak RSS, {duration_s / 60:g}-minute video",
                    peak_mb,
                    "MB",
                    note=f"{duration_s / (time.perf_counter() - start):.0f}x"
                    " real time incl. start-up",
                )
            )
        self.extra["peak_rss_mb"] = results


def agreement(fp32: tuple, other: tuple) -> dict:
    """How far two precisions' outputs differ: which windows passed the proposal network,
    their localization labels, and the top detections."""
    (win_a, det_a), (win_b, det_b) = fp32, other
    keys_a = {
        (int(n), int(s)): i
        for i, (n, s) in enumerate(zip(win_a.window_frames, win_a.start_frame, strict=True))
    }
    keys_b = {
        (int(n), int(s)): i
        for i, (n, s) in enumerate(zip(win_b.window_frames, win_b.start_frame, strict=True))
    }
    common = sorted(set(keys_a) & set(keys_b))
    same_label = sum(win_a.label_index[keys_a[k]] == win_b.label_index[keys_b[k]] for k in common)
    score_gap = max(
        (abs(win_a.score[keys_a[k]] - win_b.score[keys_b[k]]) for k in common), default=0.0
    )
    top = min(len(det_a), len(det_b), 100)
    same_top = len(
        {(d.start_s, d.label) for d in det_a[:top]} & {(d.start_s, d.label) for d in det_b[:top]}
    )
    return {
        "windows_fp32": len(keys_a),
        "windows_other": len(keys_b),
        "windows_in_both": len(common),
        "same_label_of_common": same_label / max(len(common), 1),
        "max_score_gap": float(score_gap),
        "detections_fp32": len(det_a),
        "detections_other": len(det_b),
        "top100_shared": same_top / max(top, 1),
    }


def train_batch(device: torch.device) -> int:
    """Clips per training step in the train section."""
    return 64 if device.type == "cuda" else 16


def model_train_rate(model, clip: ClipConfig, device, batch: int, steps: int) -> float:
    """Clips/s of bf16 channels-last AdamW steps on one batch kept on the device (the
    network alone, no data loading)."""
    network = build_network(NUM_CLASSES + 1, model.options, clip)
    network.to(device, memory_format=torch.channels_last_3d).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    crop = clip.crop_size
    clips = torch.randn(batch, 3, 16, crop, crop, device=device).to(
        memory_format=torch.channels_last_3d
    )
    labels = torch.randint(0, NUM_CLASSES + 1, (batch,), device=device)
    ious = torch.rand(batch, device=device)
    times, last = [], time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device.type, torch.bfloat16):
            logits = network(clips)
        loss = overlap_loss(logits.float(), labels, ious)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return batch / statistics.median(times[3:])  # the first steps warm caches and autotune


def format_row(row: Row) -> str:
    text = f"{row.stage:<12} {row.setting:<62} {row.value:>10.1f} {row.unit:<12}"
    if row.baseline:
        text += f" {row.value / row.baseline:>5.2f}x baseline"
    if row.bound:
        text += f"  {row.value / row.bound:>4.0%} of bound {row.bound:.0f}"
    if row.note:
        text += f"  ({row.note})"
    return text


def peak_rss_of(args: argparse.Namespace) -> None:
    """Child process of the memory section: detect on one video, print the peak RSS in MB."""
    detector = Detector.load(_model_dir(args), device=args.device)
    detector(args.peak_rss_of)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def train_rate_of(args: argparse.Namespace) -> None:
    """Child process of the train section: the network's training step alone, with glibc's
    default malloc or scnn.allocator's settings; prints clips/s."""
    if args.train_rate_of == "keep":
        keep_large_allocations()
    model = load_model(_model_dir(args))
    device = torch.device(args.device)
    print(model_train_rate(model, model.clip, device, train_batch(device), args.train_steps))


def _model_dir(args: argparse.Namespace) -> Path:
    model_dir = Path(args.work) / f"model_{args.model}"
    if not (model_dir / "model.json").exists():
        raise SystemExit(f"{model_dir} missing: run another section first")
    return model_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="cpu", help="model size (cpu)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (cpu)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's choice)")
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help="clips per network call (default: the Detector's; 256 on a GPU)",
    )
    parser.add_argument("--compile", default="", help="torch.compile mode to add (off)")
    parser.add_argument(
        "--train-compile", default="", help="torch.compile mode of a training row to add (off)"
    )
    parser.add_argument(
        "--decode-processes",
        type=int,
        default=0,
        help="processes of the parallel decode row (0: one per core)",
    )
    parser.add_argument("--video-s", type=float, default=120.0, help="test video length, s (120)")
    parser.add_argument("--source-size", default="320x240", help="test video size (320x240)")
    parser.add_argument("--seconds", type=float, default=3.0, help="timing per measurement (3)")
    parser.add_argument("--train-steps", type=int, default=40, help="steps per training run (40)")
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, of {','.join(SECTIONS)}",
    )
    parser.add_argument("--work", default="/tmp/scnn-bench", help="videos and models (reused)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--peak-rss-of", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train-rate-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_rss_of:
        peak_rss_of(args)
        return
    if args.train_rate_of:
        train_rate_of(args)
        return
    if args.device == "cpu":  # as the Detector and the trainer do; see scnn.allocator
        keep_large_allocations()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # autotune conv algorithms for the fixed shapes
    bench = Bench(args)
    device_name = (
        torch.cuda.get_device_name(bench.device)
        if bench.device.type == "cuda"
        else platform.processor() or platform.machine()
    )
    print(
        f"# {device_name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"model {args.model} ({bench.gflops:.2f} GFLOP/clip), "
        f"proposal threshold {bench.threshold:.4f}",
        flush=True,
    )
    sections = args.sections.split(",")
    if "matmul" not in sections:
        sections.insert(0, "matmul")  # every bound needs it
    for section in sections:
        if section not in SECTIONS:
            raise SystemExit(f"unknown section {section!r}; choose from {', '.join(SECTIONS)}")
        getattr(bench, section)()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {
                    "date": datetime.datetime.now().isoformat(timespec="seconds"),
                    "command": " ".join(sys.argv),
                    "device": device_name,
                    "torch": torch.__version__,
                    "threads": torch.get_num_threads(),
                    "model": args.model,
                    "gflops_per_clip": bench.gflops,
                    "rows": [row.as_dict() for row in bench.rows],
                    "extra": {str(k): v for k, v in bench.extra.items()},
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
