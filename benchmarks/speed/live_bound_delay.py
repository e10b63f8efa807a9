"""How much later live detection gives a detection out when the model has a boundary network
(docs/live.md): a window not scored yet may then land up to MAX_WINDOW_OFFSET of its length
from its place on the grid (scnn.live.exposed), so a detection stays within reach of more
windows to come, and is final later.

The bundled model beside the same model with a boundary network whose last layer is zeros
(boundary_cost.zero_head_network): every offset 0, so both give the same detections and only
the finality rule differs; with ``--model DIR``, a model's trained boundary network beside the
same model without it. Live detection (no voting, which live refuses) of synthetic test videos
read as fast as they decode: the delay in video time, the frames decoded when a detection is
given out past its end, does not depend on the pace. Detections that end in a video's last
bound seconds are left out (the video's end makes them final). ``--max-offset B`` measures
what another bound would cost: it sets MAX_WINDOW_OFFSET in scnn.postprocess and scnn.live for
the run.

    nice -n 10 python3 benchmarks/speed/live_bound_delay.py --threads 1 --videos 2 --duration-s 120
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
import torch
from boundary_cost import make_videos, zero_head_network

import scnn.live
import scnn.postprocess
from scnn.detect import BUNDLED_MODEL, DetectConfig, Detector
from scnn.live import latency_bound_frames, live_detections
from scnn.modelfile import LoadedModel, load_model
from scnn.runtime import chunk_frames_for
from scnn.video import video_name


def delays(detector: Detector, videos: list[Path]) -> dict:
    """Live detection of each video: each detection's delay in seconds of video (those ending
    before the video's last bound seconds), keyed by video, label and score; whether the
    final set equals the offline detections; the bound in seconds."""
    model = detector.model
    move = 0.0 if model.boundaries is None else scnn.postprocess.MAX_WINDOW_OFFSET
    nms_iou = detector.postprocess_settings().nms_iou
    chunk_frames = chunk_frames_for(detector.device)  # as live reads the stream
    bound = latency_bound_frames(model.windows, nms_iou, chunk_frames, detector.batch_size, move)
    bound_s = bound / model.fps
    given, chained, equal = {}, {}, True
    for video in videos:
        found = list(live_detections(detector, video))
        end_s = max((f.frames_seen for f in found), default=0) / model.fps
        offline = {dataclasses.replace(d, video=video_name(video)) for d in detector(video)}
        equal &= {f.detection for f in found} == offline and len(found) == len(offline)
        for f in found:
            if f.detection.end_s <= end_s - bound_s:
                key = (video.name, f.detection.label, f.detection.score)
                given[key] = f.frames_seen / model.fps - f.detection.end_s
                chained[key] = f.chained
    return {"given": given, "chained": chained, "equal": equal, "bound_s": bound_s}


def largest_offset(detector: Detector, videos: list[Path]) -> float:
    """The largest offset the model's boundary network gives a window of ``videos`` labelled
    with an action, as a share of the window's length (its segment, as the bound is)."""
    largest = 0.0
    for video in videos:
        windows = detector.score_windows(video)
        length = windows.end_s - windows.start_s
        for offsets in (windows.start_offset_s, windows.end_offset_s):
            largest = max(largest, float(np.max(np.abs(offsets) / length, initial=0.0)))
    return largest


def row(name: str, result: dict) -> str:
    """A table row: detections, equal to offline, bound, median/95th/max delay, chained."""
    values = np.array(list(result["given"].values()))
    median, p95, most = np.percentile(values, [50, 95, 100]) if len(values) else (np.nan,) * 3
    chained = sum(result["chained"].values())
    return (f"| {name} | {len(values)} | {result['equal']} | {result['bound_s']:.1f} | "
            f"{median:.1f} | {p95:.1f} | {most:.1f} | {chained} |")  # fmt: skip


def pair(model: LoadedModel, boundaries: torch.nn.Module) -> tuple[Detector, Detector]:
    """Live detectors of ``model`` without and with ``boundaries``."""
    config = DetectConfig(vote_iou=0.0, lanes=1)
    without = dataclasses.replace(model, boundaries=None)
    with_it = dataclasses.replace(model, boundaries=boundaries)
    return Detector(without, config), Detector(with_it, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=2, help="synthetic test videos")
    parser.add_argument("--duration-s", type=float, default=120.0, help="each video's length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--model", type=Path, help="a model directory with a boundary network")
    parser.add_argument("--max-offset", type=float, help="another bound on the offsets")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "scnn_bound")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.max_offset is not None:
        scnn.postprocess.MAX_WINDOW_OFFSET = scnn.live.MAX_WINDOW_OFFSET = args.max_offset
    videos = make_videos(args.work, args.videos, args.duration_s)
    bundled = load_model(BUNDLED_MODEL)
    variants = {"bundled model": pair(bundled, zero_head_network(bundled))}
    if args.model is not None:
        trained = load_model(args.model)
        variants[f"{args.model.name}"] = pair(trained, trained.boundaries)
        largest = largest_offset(variants[args.model.name][1], videos)
        print(f"{args.model.name}: its largest offset {largest:.3f} of a window's length\n")
    print(f"{len(videos)} videos of {args.duration_s:g} s, {args.threads} torch thread(s), "
          f"MAX_WINDOW_OFFSET {scnn.postprocess.MAX_WINDOW_OFFSET:g}\n")  # fmt: skip
    print("| model | boundary network | detections | final set = offline | bound (s) | "
          "median delay (s) | 95th pct | max | held by a chain |")  # fmt: skip
    print("|---|---|---:|---|---:|---:|---:|---:|---:|")
    for name, (without, with_it) in variants.items():
        results = delays(without, videos), delays(with_it, videos)
        for label, result in zip(("none", "yes"), results, strict=True):
            print(row(f"{name} | {label}", result))
        if name == "bundled model":  # the same detections: each one's extra delay
            first, second = (r["given"] for r in results)
            extra = np.array([second[k] - first[k] for k in first if k in second])
            print(f"\nthe same {len(extra)} detections later by a median {np.median(extra):.1f} s "
                  f"of video, 95th percentile {np.percentile(extra, 95):.1f} s, at most "
                  f"{extra.max():.1f} s; {np.mean(extra == 0):.0%} no later\n")  # fmt: skip


if __name__ == "__main__":
    main()
