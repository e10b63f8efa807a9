"""Peak memory (RSS) of offline detection, live detection and feature extraction against the
video's length, each run in a fresh process, with the bundled model and its own settings.

The video is one where the model fires often: 96x72 synthetic footage of coloured shapes
that move and grow, with a short action every few seconds (a 5-minute stretch, made with
scnn.synth, looped by FFmpeg to each length). The runs go side by side, each in a fresh
process that reads its own peak (VmHWM) at the end and its RSS after every minute of video,
so a plot shows where memory goes.

    python3 benchmarks/speed/speed_memory.py --threads 2                      # 10 min and 2 h
    python3 benchmarks/speed/speed_memory.py --threads 2 --live-minutes 480   # an 8-hour stream
    python3 benchmarks/speed/speed.py --threads 2 --sections memory            # the same rows

Live detection reads the file unpaced (faster than real time); its finality delay (video
seconds from a detection's end to when it is given out) is reported for the first 10 minutes
and for the rest of the stream.

A container's index is part of any reader's memory: FFmpeg holds an MP4's whole sample index
(about 55 bytes a frame, benchmarks/speed/RESULTS.md) for as long as the file is open, a
Matroska file only its sparse cues. ``--container mkv`` runs the same streams copied into
Matroska; the "open" rows say what opening each video and reading its first packet costs a
fresh process, so the growth that is scnn's own can be told from the index's.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from harness import (
    FPS,
    Bench,
    Detector,
    Extractor,
    FeatureConfig,
    Row,
    SynthConfig,
    format_row,
    keep_large_allocations,
    live_detections,
    model_source,
    own_peak_rss_mb,
    parse_args,
    parser,
    plan_videos,
    render,
    write_h264,
)

from scnn.video_source import READ_TIMEOUT_S, open_video

JOBS = ("detect", "live", "features")
CONTAINERS = ("mp4", "mkv")
LENGTHS_MIN = (10, 120)  # offline detection and features: each length in a fresh process
LIVE_MIN = 120  # one live stream this long; memory read along it
STRETCH_S = 300.0  # the synthetic stretch that is looped
SIZE = (96, 72)
MB = 2**20


def fires_often_video(work: Path, minutes: float, container: str = "mp4") -> Path:
    """The looped synthetic video of ``minutes`` in ``container`` (made once under ``work``,
    then reused; Matroska as a copy of the MP4's stream)."""
    path = work / f"fires_often_{minutes:g}min.{container}"
    if path.exists():
        return path
    if container != "mp4":
        source = fires_often_video(work, minutes)
        tmp = path.with_suffix(f".part.{container}")
        command = ["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy", str(tmp)]
        subprocess.run(command, check=True)
        return tmp.rename(path)
    stretch = work / "fires_often_stretch.mp4"
    if not stretch.exists():
        config = SynthConfig(
            train_videos=0,
            val_videos=0,
            test_videos=1,
            width=SIZE[0],
            height=SIZE[1],
            duration_range_s=(STRETCH_S, STRETCH_S),
            instance_duration_range_s=(0.6, 1.6),  # short actions: one every few seconds
            seed=7,
        )
        (plan,) = plan_videos(config)
        frames = render(plan, config, np.random.default_rng(1))
        write_h264(stretch, frames, fps=config.fps, size=SIZE, crf=21.5, pix_fmt="yuv420p")
    loops = int(np.ceil(minutes * 60 / STRETCH_S))
    tmp = path.with_suffix(".part.mp4")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(stretch)]
        + ["-t", f"{minutes * 60:g}", "-c", "copy", str(tmp)],
        check=True,
    )
    tmp.rename(path)
    return path


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmRSS in /proc/self/status: this benchmark needs Linux")


def child(args: argparse.Namespace) -> None:
    """One job on one video. Prints JSON lines as it goes, so a run cut short still tells
    what it saw: the RSS after each minute of video (``rss_mb``), for live detection each
    detection's finality delay (``delay_s``, at ``frames``), and at the end the peak
    (``peak_mb``) with the job's count."""
    frames, minutes = 0, 0

    def say(**fields) -> None:
        print(json.dumps(fields), flush=True)

    def progress(new_frames: int) -> None:
        nonlocal frames, minutes
        frames += new_frames
        while frames >= (minutes + 1) * 60 * FPS:
            minutes += 1
            say(minute=minutes, rss_mb=_rss_mb())

    video, count = args.child_video, 0
    keep_large_allocations()  # as scnn's commands set it on a CPU
    start = time.perf_counter()
    if args.job == "open":
        before = _rss_mb()
        with open_video(video, READ_TIMEOUT_S) as container:
            next(container.demux(container.streams.video[0]))
            say(open_mb=_rss_mb() - before)
        return
    if args.job == "detect":
        count = len(Detector.load()(video, progress))
    elif args.job == "live":
        for found in live_detections(Detector.load(), video, progress=progress):
            count += 1
            say(delay_s=found.frames_seen / FPS - found.detection.end_s, frames=found.frames_seen)
    else:
        with tempfile.TemporaryDirectory() as out:
            extractor = Extractor(model_source(None), FeatureConfig())
            count = extractor(video, Path(out) / "video.npy", progress).rows
    say(peak_mb=own_peak_rss_mb(), count=count, seconds=time.perf_counter() - start)


def start_child(args: argparse.Namespace, job: str, video: Path) -> subprocess.Popen:
    """``job`` on ``video`` in a fresh process (:func:`child`)."""
    command = [sys.executable, __file__, "--threads", str(args.threads), "--job", job]
    command += ["--child-video", str(video)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def child_result(process: subprocess.Popen) -> dict:
    """What a child from :func:`start_child` printed, once it has ended: ``trace_mb`` (RSS
    per minute), ``delays`` ((delay, frames) pairs) and its last line's fields."""
    output, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"{' '.join(process.args)} failed ({process.returncode})")
    return read_child_lines(output.splitlines())


def read_child_lines(lines: list[str]) -> dict:
    """The lines of :func:`child` gathered: see :func:`child_result`."""
    result: dict = {"trace_mb": [], "delays": []}
    for line in map(json.loads, lines):
        if "rss_mb" in line:
            result["trace_mb"].append(line["rss_mb"])
        elif "delay_s" in line:
            result["delays"].append((line["delay_s"], line["frames"]))
        else:
            result |= line
    return result


def measure(bench: Bench) -> None:
    """speed.py's memory section: every job at the default lengths."""
    bench.extra["memory"] = measure_all(bench.args, bench.work, LENGTHS_MIN, LIVE_MIN, bench.add)


def measure_all(
    args: argparse.Namespace,
    work: Path,
    lengths_min: tuple[int, ...],
    live_min: int,
    add: Callable[[Row], None],
    container: str = "mp4",
) -> dict:
    """Each offline job at each length and one live stream, all at once (each child's memory
    is its own; their speed is not measured here): rows to ``add``, and the results by job and
    length."""
    runs = [(job, m) for job in ("detect", "features") for m in lengths_min] + [("live", live_min)]
    videos = {minutes: fires_often_video(work, minutes, container) for _, minutes in runs}
    for minutes in lengths_min:  # one at a time, before the jobs: what opening a video holds
        opened = child_result(start_child(args, "open", videos[minutes]))["open_mb"]
        add(Row("memory", f"open and read a packet, {minutes}-minute {container}", opened, "MB"))
    children = [start_child(args, job, videos[minutes]) for job, minutes in runs]
    results: dict = {}
    for (job, minutes), process in zip(runs, children, strict=True):
        results.setdefault(job, {})[minutes] = child_result(process)
    for job in ("detect", "features"):
        for minutes in lengths_min:
            found = results[job][minutes]
            extra = f"{found['count']} detections" if job == "detect" else ""
            add(
                Row(
                    "memory",
                    f"{job} peak RSS, {minutes}-minute video",
                    found["peak_mb"],
                    "MB",
                    note=extra,
                )
            )
    found = results["live"][live_min]
    trace = found["trace_mb"][9:] or found["trace_mb"][-1:]  # from 10 minutes on
    early, late = _delays(found["delays"])
    add(Row("memory", f"live RSS at 10 min of a {live_min}-minute stream", trace[0], "MB"))
    add(
        Row(
            "memory",
            f"live peak RSS, {live_min}-minute stream",
            found["peak_mb"],
            "MB",
            note=f"RSS after 10 min: max {max(trace) - trace[0]:+.1f} MB; finality delay "
            f"median / 95th pct, first 10 min {early[0]:.1f} / {early[1]:.1f} s, "
            f"after {late[0]:.1f} / {late[1]:.1f} s",
        )
    )
    return results


def _delays(delays: list[list[float]]) -> tuple[tuple[float, float], tuple[float, float]]:
    """Median and 95th percentile of the finality delays in the first 10 minutes and after."""
    seconds = np.array([d for d, _ in delays])
    early = np.array([frames <= 600 * FPS for _, frames in delays])

    def stats(part: np.ndarray) -> tuple[float, float]:
        if not len(part):
            return math.nan, math.nan
        return float(np.median(part)), float(np.percentile(part, 95))

    return stats(seconds[early]), stats(seconds[~early])


def plot(results: dict, path: Path) -> None:
    """RSS against video length: each job's RSS minute by minute along its longest run, and
    each run's peak at its length."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for job, colour in zip(JOBS, ("C0", "C1", "C2"), strict=True):
        runs = results[job]
        longest = runs[max(runs)]["trace_mb"]
        axes.plot(np.arange(1, len(longest) + 1), longest, color=colour, label=f"{job}: RSS")
        minutes = sorted(runs)
        peaks = [runs[m]["peak_mb"] for m in minutes]
        axes.plot(minutes, peaks, "o--", color=colour, label=f"{job}: peak of a run that long")
    axes.set_xlabel("video length (minutes)")
    axes.set_ylabel("MB")
    axes.set_title("scnn memory against video length (bundled model, 96x72, fires often)")
    axes.legend(fontsize=7, loc="center right")
    figure.savefig(path, dpi=100)


def main() -> None:
    command_line = parser(__doc__)
    command_line.add_argument("--minutes", type=int, nargs="+", default=list(LENGTHS_MIN))
    command_line.add_argument("--live-minutes", type=int, default=LIVE_MIN)
    command_line.add_argument("--plot", type=Path, default=None, help="write the PNG here")
    command_line.add_argument("--container", choices=CONTAINERS, default="mp4")
    command_line.add_argument("--job", choices=(*JOBS, "open"), help=argparse.SUPPRESS)
    command_line.add_argument("--child-video", type=Path, help=argparse.SUPPRESS)
    args = parse_args(command_line)
    if args.child_video:
        child(args)
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def add(row: Row) -> None:
        print(format_row(row), flush=True)

    lengths = tuple(args.minutes)
    results = measure_all(args, work, lengths, args.live_minutes, add, args.container)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
