"""What every speed section shares: the printed row, timing, the matrix-multiply bound, the test
video and random-weight model directory in the work folder, the command line, the header and the
JSON output.

Every scnn name that speed.py's sections (speed_<section>.py) use is imported here and nowhere
else, so that they run unchanged on another checkout's package (``speed.py --compare-src``) and
a package that names things differently needs an edit of this file only. The other scripts in
this folder, which --compare-src does not run, import scnn directly.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from pathlib import Path

import av
import numpy as np
import torch

import scnn
from scnn.allocator import keep_large_allocations
from scnn.clips import ClipConfig, assemble_clips, sample_frame_indices
from scnn.config import load_config
from scnn.dataset import DataConfig
from scnn.detect import Detector
from scnn.encode import write_h264
from scnn.features import Extractor, FeatureConfig, model_source
from scnn.fileio import atomic_write_text
from scnn.live import live_detections
from scnn.loss import overlap_loss
from scnn.model import C3D, ModelOptions, build_network, clip_gflops
from scnn.modelfile import LoadedModel, load_model, save_model
from scnn.parallel_decode import iter_frames_parallel
from scnn.pipeline import inference_network
from scnn.postprocess import postprocess
from scnn.precision import native_bf16
from scnn.records import ScoredWindows
from scnn.runtime import cpu_batch_size
from scnn.stages import LOCALIZATION, prepare_data
from scnn.synth import SynthConfig, plan_videos, render
from scnn.train import TRAIN_LOG, train
from scnn.video import FPS, iter_frames, num_frames, probe, read_frames
from scnn.windows import WindowConfig, window_grid

__all__ = [  # what the sections, the driver and compare.py take from here
    # scnn
    "FPS",
    "LOCALIZATION",
    "TRAIN_LOG",
    "ClipConfig",
    "DataConfig",
    "Detector",
    "Extractor",
    "FeatureConfig",
    "ScoredWindows",
    "SynthConfig",
    "WindowConfig",
    "assemble_clips",
    "atomic_write_text",
    "build_network",
    "inference_network",
    "iter_frames",
    "iter_frames_parallel",
    "keep_large_allocations",
    "live_detections",
    "load_config",
    "load_model",
    "model_source",
    "native_bf16",
    "num_frames",
    "overlap_loss",
    "plan_videos",
    "postprocess",
    "prepare_data",
    "probe",
    "read_frames",
    "render",
    "sample_frame_indices",
    "train",
    "window_grid",
    "write_h264",
    # the harness
    "NUM_CLASSES",
    "Bench",
    "Row",
    "best_rate",
    "existing_model_dir",
    "forwarded_options",
    "make_video",
    "matmul",
    "package_src",
    "parse_args",
    "parser",
    "run_sections",
    "section_main",
    "sync",
]

NUM_CLASSES = 20
PASS_FRACTION = 0.25  # windows reaching the localization network (realistic: 15-30 %)


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


def package_src() -> Path:
    """The folder holding the scnn package this process measures (a checkout's src/)."""
    return Path(scnn.__file__).resolve().parents[1]


# --- the printed figure -----------------------------------------------------------------------


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


def format_row(row: Row) -> str:
    text = f"{row.stage:<12} {row.setting:<62} {row.value:>10.1f} {row.unit:<12}"
    if row.baseline:
        text += f" {row.value / row.baseline:>5.2f}x baseline"
    if row.bound:
        text += f"  {row.value / row.bound:>4.0%} of bound {row.bound:.0f}"
    if row.note:
        text += f"  ({row.note})"
    return text


# --- timing -----------------------------------------------------------------------------------


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
        model = LoadedModel(
            proposal=build_network(2, size.options, size.clip).eval(),
            localization=build_network(NUM_CLASSES + 1, size.options, size.clip).eval(),
            classes=tuple(f"class{k:02d}" for k in range(NUM_CLASSES)),
            prior={length: np.ones(NUM_CLASSES) for length in windows.lengths_frames},
            windows=windows,
            convention=size.clip.convention(),
            clip=size.clip,
            options=size.options,
        )
        save_model(path, model)
    model = load_model(path)
    frames = np.concatenate(list(islice(iter_frames(video, size=size.clip.frame_size), 8)))
    grid = window_grid(len(frames), windows)
    pick = np.linspace(0, len(grid) - 1, min(len(grid), 128)).round().astype(int)
    clips = assemble_clips(
        frames, grid.start_frame[pick], grid.length_frames[pick], model.convention, False
    )
    with torch.inference_mode():
        p_action = torch.softmax(model.proposal(clips), 1)[:, 1].numpy()
    return path, float(np.quantile(p_action, 1 - PASS_FRACTION))


def model_dir_path(args: argparse.Namespace) -> Path:
    """Where the work folder keeps the model directory of ``--model``."""
    return Path(args.work) / f"model_{args.model}"


def existing_model_dir(args: argparse.Namespace) -> Path:
    """The model directory a child process measures: made by its parent before."""
    model_dir = model_dir_path(args)
    if not (model_dir / "model.json").exists():
        raise SystemExit(f"{model_dir} missing: run another section first")
    return model_dir


# --- the state every section reads and adds its rows to ---------------------------------------


class Bench:
    """What the sections read (device, model size, test video, model directory and its
    proposal threshold, batch sizes, matmul rates) and the rows they add."""

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
        self.model_dir, self.threshold = make_model_dir(model_dir_path(args), self.size, self.video)
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

    def child_command(self, script: str) -> list[str]:
        """``script`` (a section's file), in a child process, on this run's model and settings."""
        return [sys.executable, script, *forwarded_options(self.args)]


def matmul(bench: Bench) -> None:
    """The matrix-multiply rates that every bound divides."""
    seconds = bench.args.seconds
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        bench.rate[precision] = matmul_flops(bench.device, dtype, seconds)
        bench.add(Row("matmul", precision, bench.rate[precision] / 1e9, "GFLOP/s"))


# --- command line, header, JSON -------------------------------------------------------------


def parser(doc: str) -> argparse.ArgumentParser:
    """The options every section takes; ``doc``'s first line describes the script."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
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
    parser.add_argument("--work", default="/tmp/scnn-bench", help="videos and models (reused)")
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    return parser


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The parsed command line, with torch's thread count set from it before any work."""
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def forwarded_options(args: argparse.Namespace) -> list[str]:
    """The options of ``parser`` that this run sets, as a child process's command line (the
    video, model and timing stay the parent's; ``--out`` is the child's own)."""
    defaults = vars(parser(__doc__).parse_args([]))
    command = []
    for name, default in defaults.items():
        value = getattr(args, name)
        if name != "out" and value != default:
            command += [f"--{name.replace('_', '-')}", str(value)]
    return command


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def write_json(path: Path, bench: Bench) -> None:
    atomic_write_text(
        path,
        json.dumps(
            {
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv),
                "device": device_name(bench.device),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "model": bench.args.model,
                "scnn": str(package_src()),
                "gflops_per_clip": bench.gflops,
                "rows": [row.as_dict() for row in bench.rows],
                "extra": {str(k): v for k, v in bench.extra.items()},
            },
            indent=1,
        )
        + "\n",
    )


def own_peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM), in MB. Not ru_maxrss: a child that subprocess starts
    (vfork, then exec) keeps its parent's high-water mark there, here the parent's ~800 MB
    after its own measurements."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status: peak RSS needs Linux")


def run_sections(args: argparse.Namespace, sections: list[Callable[[Bench], None]]) -> None:
    """Set the process up as scnn's own commands do, print the header, run ``sections`` in
    order and write the JSON."""
    if args.device == "cpu":  # as scnn's commands do; see scnn.allocator
        keep_large_allocations()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # autotune conv algorithms for the fixed shapes
    bench = Bench(args)
    print(
        f"# {device_name(bench.device)}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, model {args.model} ({bench.gflops:.2f} GFLOP/clip), "
        f"proposal threshold {bench.threshold:.4f}",
        flush=True,
    )
    for section in sections:
        section(bench)
    if args.out:
        write_json(args.out, bench)


def section_main(doc: str, section: Callable[[Bench], None]) -> None:
    """A section file run on its own: the matmul bound, then the section."""
    run_sections(parse_args(parser(doc)), [matmul, section])
