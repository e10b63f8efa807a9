"""What learned boundaries cost at detection: ``scnn detect``'s path (Detector: one streaming
pass, post-processing, then the boundary clips' second pass over the video) on synthetic test
videos, with the bundled model's S-CNN networks alone (``--boundary-clips 0``), with its
boundary-clip network as it ships (twice), and with a boundary network on top, alternated in
one run (docs/accuracy.md, "Learned boundaries").

The boundary network beside the bundled model has the bundled architecture and a random body
with a last layer of zeros: it costs what a trained one costs (it runs on every window labelled
with an action) and leaves every window where it was, so each variant refines the same
detections. The boundary clips' time is split into the second pass's decoding (the same pass
with the network's outputs given as zeros) and the rest. Then live detection (no voting, which
live refuses) with and without the boundary clips: how much later, in video time, each
detection is given out.

    nice -n 10 python3 benchmarks/speed/boundary_cost.py --threads 1
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from scnn.boundary_refiner import refine_in_video
from scnn.detect import BUNDLED_MODEL, DetectConfig, Detector
from scnn.live import live_detections
from scnn.model import build_network
from scnn.modelfile import LoadedModel, load_model
from scnn.synth import SynthConfig, generate
from scnn.video import num_frames, probe

SHIPPED = "the bundled model (boundary clips twice)"


def zero_head_network(model: LoadedModel) -> torch.nn.Module:
    """C3D of the model's architecture with two outputs, its last layer zeros."""
    torch.manual_seed(0)
    network = build_network(2, model.options, model.clip)
    torch.nn.init.zeros_(network.fc8.weight)
    torch.nn.init.zeros_(network.fc8.bias)
    return network.eval()


def make_videos(work: Path, count: int, duration_s: float) -> list[Path]:
    """``count`` synthetic test videos (the bundled model's kind) of ``duration_s`` seconds,
    made once in ``work`` for each count and duration (the ground truth, written last, marks
    a finished set)."""
    root = work / f"synth_{count}x{duration_s:g}s"
    if not (root / "annotations.json").is_file():
        config = SynthConfig(
            train_videos=0,
            val_videos=0,
            test_videos=count,
            duration_range_s=(duration_s, duration_s),
        )
        generate(root, config, quiet=True)
    return sorted((root / "videos").glob("*.mp4"))


def no_network(batch: torch.Tensor) -> np.ndarray:
    """Offsets of 0 without running a network: the second pass's decoding and clips alone."""
    return np.zeros((len(batch), 2))


def live_delays(detectors: tuple[Detector, Detector], videos: list[Path]) -> np.ndarray:
    """Seconds of video by which the boundary clips (``detectors[1]``) make each live detection
    later than without them (``detectors[0]``): the frames decoded when it is given out, the
    same detection (label and score) matched across the two runs."""
    extra = []
    for video in videos:
        given = []
        for detector in detectors:
            found = live_detections(detector, video)
            given.append({(f.detection.label, f.detection.score): f.frames_seen for f in found})
        extra += [given[1][key] - frames for key, frames in given[0].items()]
    return np.array(extra) / detectors[0].model.fps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs") / "boundary_cost")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--duration-s", type=float, default=60.0)
    parser.add_argument("--rounds", type=int, default=3, help="alternated rounds (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    videos = make_videos(args.work, args.videos, args.duration_s)
    model = load_model(BUNDLED_MODEL)
    if model.boundary_clips is None:
        raise SystemExit(f"{BUNDLED_MODEL}: the bundled model has no boundary-clip network")
    no_clips = dataclasses.replace(model, boundary_clips=None)
    boundaries = dataclasses.replace(model, boundaries=zero_head_network(model))
    variants = {
        "S-CNN's networks alone (--boundary-clips 0)": Detector(no_clips),
        SHIPPED: Detector(model),
        "with a boundary network too": Detector(boundaries),
    }
    seconds = {name: [] for name in variants}
    clip_seconds, decode_seconds = [], []
    for _ in range(args.rounds):
        for name, detector in variants.items():
            wall = clip_wall = decode_wall = 0.0
            found_count = 0
            for video in videos:
                start = time.perf_counter()
                found = detector.detections(detector.score_windows(video, background=False))
                scored = time.perf_counter()
                detector.refine(video, found)
                wall += time.perf_counter() - start
                clip_wall += time.perf_counter() - scored
                found_count += len(found)
                if name == SHIPPED:
                    start = time.perf_counter()
                    refine_in_video(
                        video,
                        found,
                        detector.boundary_clips,
                        no_network,
                        model.convention,
                        model.fps,
                    )
                    decode_wall += time.perf_counter() - start
            seconds[name].append(wall)
            if name == SHIPPED:
                clip_seconds.append(clip_wall)
                decode_seconds.append(decode_wall)
    duration_s = sum(num_frames(probe(video), model.fps) for video in videos) / model.fps
    print(
        f"\nDetector on {len(videos)} videos ({duration_s:.0f} s, {found_count} detections), "
        f"{args.threads} torch thread(s), best of {args.rounds} alternated rounds:\n"
    )
    baseline = min(next(iter(seconds.values())))
    print("| | wall s | × real time | time / S-CNN's alone |\n|---|---:|---:|---:|")
    for name, times in seconds.items():
        best_s = min(times)
        print(f"| {name} | {best_s:.2f} | {duration_s / best_s:.1f} | {best_s / baseline:.2f}× |")
    best = int(np.argmin(seconds[SHIPPED]))
    print(f"\nboundary clips: {clip_seconds[best]:.2f} s of that run, of which the second "
          f"pass's decoding and clips {decode_seconds[best]:.2f} s")  # fmt: skip
    live = tuple(Detector(m, DetectConfig(vote_iou=0.0, lanes=1)) for m in (no_clips, model))
    extra = live_delays(live, videos)
    print(f"\nlive (no voting): {len(extra)} detections, the boundary clips make them final "
          f"later by a median {np.median(extra):.2f} s of video, 95th percentile "
          f"{np.percentile(extra, 95):.2f} s, at most {extra.max():.2f} s; "
          f"{np.mean(extra == 0):.0%} no later")  # fmt: skip


if __name__ == "__main__":
    main()
