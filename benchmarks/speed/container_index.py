"""Memory FFmpeg holds for each open of a video, by container and length: the MP4 demuxer
keeps the file's whole sample index while the file is open, Matroska's only its cues, which
is why CPU lanes share one open of an MP4 (scnn.video_source.SharedFile).

The videos are FFmpeg's test pattern, 96x72 at 25 fps, encoded once by the ``ffmpeg``
command (x264 with its defaults, B-frames included) and copied into Matroska. Each is opened
``--opens`` times and kept open; the heap in use (glibc's ``mallinfo2``) after, less before,
divided by the opens, is what one open holds.

    python3 benchmarks/speed/container_index.py
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
from pathlib import Path

import av

MB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
        + ("uordblks", "fordblks", "keepcost")
    ]


def heap_in_use_bytes() -> int:
    """Bytes malloc has handed out and not taken back (glibc only)."""
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return info.uordblks + info.hblkhd


def test_pattern(work: Path, minutes: float, suffix: str) -> Path:
    """The test pattern video of ``minutes`` in ``suffix``'s container, made once in ``work``."""
    mp4 = work / f"pattern_{minutes:g}min.mp4"
    if not mp4.exists():
        part = mp4.with_suffix(".part.mp4")
        pattern = ["-f", "lavfi", "-i", "testsrc=size=96x72:rate=25", "-t", f"{minutes * 60:g}"]
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", *pattern, "-c:v", "libx264", "-pix_fmt", "yuv420p"]
            + [str(part)],
            check=True,
        )
        part.rename(mp4)
    path = mp4.with_suffix(suffix)
    if not path.exists():
        part = path.with_suffix(".part" + suffix)
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-i", str(mp4), "-c", "copy", str(part)], check=True
        )
        part.rename(path)
    return path


def held_per_open_mb(path: Path, opens: int) -> float:
    """The heap one open of ``path`` holds, averaged over ``opens`` opens kept at once."""
    before = heap_in_use_bytes()
    containers = [av.open(str(path)) for _ in range(opens)]
    held = heap_in_use_bytes() - before
    for container in containers:
        container.close()
    return held / opens / MB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs") / "container_index")
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 120])
    parser.add_argument("--opens", type=int, default=4)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    print("| video | frames | MB per open | bytes per frame |\n|---|---:|---:|---:|")
    for minutes in args.minutes:
        frames = round(minutes * 60 * 25)
        for suffix in (".mp4", ".mkv"):
            held = held_per_open_mb(test_pattern(args.work, minutes, suffix), args.opens)
            name = f"{minutes:g} min {suffix[1:]}"
            print(f"| {name} | {frames} | {held:.2f} | {held * MB / frames:.0f} |")


if __name__ == "__main__":
    main()
