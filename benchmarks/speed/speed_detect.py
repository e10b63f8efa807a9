"""Speed of detection end to end (decode, both networks, post-processing) by the Detector, next
to the straightforward pipeline, in times real time.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_detect.py --model cpu --threads 2
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from harness import (
    FPS,
    Bench,
    Detector,
    Row,
    ScoredWindows,
    assemble_clips,
    load_model,
    make_video,
    num_frames,
    postprocess,
    probe,
    read_frames,
    section_main,
    window_grid,
)


def baseline_detect(
    model_dir: Path, video: Path, threshold: float, batch: int, device: torch.device
) -> int:
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
                        frames,
                        grid.start_frame[part],
                        grid.length_frames[part],
                        model.convention,
                        False,
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


def measure(bench: Bench) -> None:
    duration_s = num_frames(probe(bench.video)) / FPS
    start = time.perf_counter()
    found = baseline_detect(
        bench.model_dir, bench.video, bench.threshold, bench.baseline_batch, bench.device
    )
    base_speed = duration_s / (time.perf_counter() - start)
    bench.add(
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
    if bench.args.compile:
        settings.append((f"auto, compile({bench.args.compile})", "auto", bench.args.compile))
    windows_per_s_of_video = len(window_grid(round(duration_s * FPS))) / duration_s
    scored = {}
    for name, precision, mode in settings:
        detector = Detector.load(
            bench.model_dir,
            device=str(bench.device),
            proposal_threshold=bench.threshold,
            batch_size=bench.args.batch,
            precision=precision,
            compile=mode,
        )
        if mode:  # compile outside the timed run, on a short video
            detector(make_video(bench.work / "warmup_30s.mp4", 30, bench.source))
        start = time.perf_counter()
        windows = detector.score_windows(bench.video)
        detections = detector.detections(windows)
        wall_s = time.perf_counter() - start
        speed = duration_s / wall_s
        proposal_clips_s = windows_per_s_of_video * speed
        network_clips_s = (windows_per_s_of_video * duration_s + len(windows)) / wall_s
        model_only = bench.extra.get(
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
        bench.add(
            Row(
                "detect",
                f"Detector {name} ({'bf16' if detector.bf16 else 'fp32'}), "
                f"batch {detector.batch_size}",
                speed,
                "x real time",
                base_speed,
                bench.bound(
                    "bf16" if detector.bf16 else "fp32",
                    bench.gflops * 1e9 * (windows_per_s_of_video + len(windows) / duration_s),
                ),
                note,
            )
        )
        scored[precision] = (windows, detections)
    if "fp32" in scored and "auto" in scored:
        bench.extra["fp32_vs_auto"] = agreement(scored["fp32"], scored["auto"])
        print("fp32 vs auto precision:", json.dumps(bench.extra["fp32_vs_auto"]), flush=True)


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


if __name__ == "__main__":
    section_main(__doc__, measure)
