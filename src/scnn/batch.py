"""Detection over many files: each video probed once (for the progress bar and the lane split),
a video that fails recorded while the rest go on, and the results written at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from scnn.detect import Detector
from scnn.errors import ScnnError
from scnn.formats import SUBTITLE_FORMATS, write_detections
from scnn.formats.windows_csv import concat_windows, write_windows_csv
from scnn.records import Detection, ScoredWindows
from scnn.video import num_frames, probe


@dataclass(frozen=True)
class BatchResult:
    """Detections of every video that worked, and why each other one failed."""

    detections: dict[str, list[Detection]]  # video name -> detections sorted by score
    windows: list[ScoredWindows]  # each video's proposal survivors, in order (when kept)
    failures: dict[str, str]  # path -> one-line reason

    def all_detections(self) -> list[Detection]:
        """Every video's detections, sorted by descending score (stable across videos)."""
        merged = [d for dets in self.detections.values() for d in dets]
        return sorted(merged, key=lambda d: -d.score)


def detect_videos(
    detector: Detector, videos: Sequence[Path], *, quiet: bool = False, keep_windows: bool = True
) -> BatchResult:
    """Run ``detector`` on each video (its boundary clips reading it a second time, when the
    model has them); a video that fails is recorded and the rest go on.
    Without ``keep_windows`` the result holds no windows, and only the windows detection
    uses are scored into memory (Detector.score_windows' ``background``)."""
    result = BatchResult({}, [], {})
    overall = tqdm(videos, desc="videos", unit="video", disable=quiet or len(videos) < 2)
    for video in overall:
        try:
            total = num_frames(probe(video), detector.model.fps)
            with tqdm(
                total=total, desc=video.name, unit="frame", leave=False, disable=quiet
            ) as bar:
                windows = detector.score_windows(video, bar.update, total, background=keep_windows)
            found = detector.refine(video, detector.detections(windows))
        except ScnnError as exc:
            result.failures[str(video)] = str(exc)
            tqdm.write(f"scnn: failed: {exc}")
            continue
        if keep_windows:
            result.windows.append(windows)
        result.detections[video.stem] = found
    return result


def write_results(
    result: BatchResult, out: Path, classes: Sequence[str], windows_csv: Path | None = None
) -> None:
    """Write detections to ``out`` (format by extension), each file atomically.

    Subtitles hold one video: with several videos, ``out``'s folder gets ``<video>.vtt``. A
    video without detections is listed where the format can (ActivityNet JSON). When no video
    was processed nothing is written, so an earlier ``out`` survives a failed run.
    """
    if not result.detections:
        raise ScnnError(
            f"no video could be processed ({len(result.failures)} failed); nothing written", out
        )
    if out.suffix.lower() in SUBTITLE_FORMATS and len(result.detections) != 1:
        for video, detections in result.detections.items():
            write_detections(out.parent / f"{video}{out.suffix}", detections, classes)
    else:
        write_detections(out, result.all_detections(), classes, videos=list(result.detections))
    if windows_csv is not None:
        write_windows_csv(windows_csv, concat_windows(result.windows, tuple(classes)))
