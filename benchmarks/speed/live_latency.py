"""Live detection's delay on a stream fed at real-time pace, next to the finality bound, and the
fastest stream a CPU keeps up with (docs/live.md).

A synthetic test video (scnn synth's kind, which the bundled model was trained on) is remuxed to
MPEG-TS and written into a named pipe packet by packet, each when its time comes, as a camera
would send it; `scnn.live` reads the pipe. A detection's delay is the wall time from the moment
its end frame was sent to the moment it was final (its line printed), and, in video time, the
frames decoded by then past its end frame (what the finality rule alone costs, compute aside).
Then the same file is detected unpaced, as fast as the CPU goes: the frames per second it decodes
and scores is the largest frame rate (of 25-fps video) it keeps up with live.

    nice -n 10 python3 benchmarks/speed/live_latency.py --threads 1 --duration-s 180
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import torch

from scnn.detect import Detector
from scnn.live import latency_bound_frames, live_detections
from scnn.runtime import chunk_frames_for
from scnn.synth import SynthConfig, generate


def make_stream(work: Path, duration_s: float) -> Path:
    """One synthetic test video of ``duration_s`` seconds, remuxed to MPEG-TS."""
    ts = work / f"live_{duration_s:g}s.ts"
    if ts.exists():
        return ts
    config = SynthConfig(
        train_videos=0, val_videos=0, test_videos=1, duration_range_s=(duration_s, duration_s)
    )
    generate(work / "synth", config, quiet=True)
    (mp4,) = (work / "synth" / "videos").glob("*.mp4")
    with av.open(str(mp4)) as source, av.open(str(ts), "w") as target:
        stream = target.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                target.mux(packet)
    return ts


def schedule(ts: Path) -> list[tuple[float, int]]:
    """When each stretch of the file is due: (seconds from the start, bytes up to then), one per
    video packet, by its decoding time."""
    due = []
    with av.open(str(ts)) as container:
        stream = container.streams.video[0]
        first = None
        for packet in container.demux(stream):
            if packet.dts is None or packet.pos is None:
                continue
            first = packet.dts if first is None else first
            due.append((float((packet.dts - first) * stream.time_base), packet.pos + packet.size))
    return due


def feed(pipe: Path, data: bytes, due: list[tuple[float, int]], started: list[float]) -> None:
    """Write ``data`` into ``pipe`` at the pace ``due`` gives, then the rest, and close."""
    with open(pipe, "wb") as out:
        started.append(time.monotonic())
        sent = 0
        for at_s, upto in due:
            time.sleep(max(0.0, started[0] + at_s - time.monotonic()))
            out.write(data[sent:upto])
            out.flush()
            sent = max(sent, upto)
        out.write(data[sent:])


def paced(detector: Detector, ts: Path, bound_s: float) -> dict:
    """Live detection of ``ts`` fed in real time through a named pipe. The detections that end
    in the stream's last ``bound_s`` seconds are left out of the delays: the stream's end makes
    them final."""
    fps = detector.model.fps
    with tempfile.TemporaryDirectory() as folder:
        pipe = Path(folder) / "camera"
        os.mkfifo(pipe)
        started: list[float] = []
        writer = threading.Thread(target=feed, args=(pipe, ts.read_bytes(), schedule(ts), started))
        writer.start()
        everything = [(time.monotonic(), item) for item in live_detections(detector, pipe)]
        writer.join()
    end_s = max((item.frames_seen for _, item in everything), default=0) / fps
    found = [(at, i) for at, i in everything if i.detection.end_s <= end_s - bound_s]
    wall = np.array([at - started[0] - item.detection.end_s for at, item in found])
    video = np.array([item.frames_seen / fps - item.detection.end_s for _, item in found])
    chained = np.array([item.chained for _, item in found])
    offline = {(d.start_s, d.end_s, d.label, d.score) for d in detector(ts)}
    live = {(i.detection.start_s, i.detection.end_s, i.detection.label, i.detection.score)
            for _, i in everything}  # fmt: skip
    return {"wall": wall, "video": video, "chained": chained, "equal": live == offline,
            "all": len(live)}  # fmt: skip


def unpaced_fps(detector: Detector, ts: Path) -> float:
    """Frames per second decoded and scored when the file is read as fast as it goes."""
    frames = [0]
    began = time.perf_counter()
    for _ in live_detections(detector, ts, progress=lambda n: frames.__setitem__(0, frames[0] + n)):
        pass
    return frames[0] / (time.perf_counter() - began)


def describe(name: str, delays: np.ndarray) -> str:
    """Median, 95th percentile and maximum of ``delays`` as a table row."""
    median, p95, most = np.percentile(delays, [50, 95, 100])
    return f"| {name} | {median:.1f} | {p95:.1f} | {most:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration-s", type=float, default=180.0, help="stream length")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--batch-size", type=int, default=None, help="clips per network call")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "scnn_live")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    ts = make_stream(args.work, args.duration_s)
    detector = Detector.load(batch_size=args.batch_size)
    grid, fps = detector.model.windows, detector.model.fps
    nms_iou = detector.postprocess_settings().nms_iou
    chunk_frames = chunk_frames_for(detector.device)  # as live reads the stream
    bound_s = latency_bound_frames(grid, nms_iou, chunk_frames, detector.batch_size) / fps
    result = paced(detector, ts, bound_s)
    speed = unpaced_fps(detector, ts)
    count, chained = len(result["wall"]), int(result["chained"].sum())
    print(f"{args.duration_s:g} s stream, bundled model, {args.threads} torch thread(s)")
    print(f"{result['all']} detections; final set equals offline: {result['equal']}")
    print(f"{count} end before the stream's last {bound_s:.1f} s; their delays:")
    print(f"finality bound (batch {detector.batch_size}, no chain): {bound_s:.2f} s of video")
    if not count:
        return
    print("| delay (s) | median | 95th pct | max |\n|---|---:|---:|---:|")
    print(describe("wall clock, end frame sent → line printed", result["wall"]))
    print(describe("video, end frame → frames decoded when final", result["video"]))
    if chained:
        print(
            describe(
                "of those held back by an NMS chain (video)", result["video"][result["chained"]]
            )
        )
    print(f"held back by an NMS chain: {chained} of {count} ({chained / max(count, 1):.0%})")
    over = int((result["video"] > bound_s).sum())
    print(f"over the bound (chains, queue waits): {over} of {count}")
    print(f"unpaced: {speed:.0f} frames/s = {speed / fps:.2f}x real time at {fps:g} fps")


if __name__ == "__main__":
    main()
