"""The whole story on data made on the spot: synthetic videos → detections → mAP → pictures.

``run_demo`` uses the bundled model (or, with ``train=True``, trains one first from a freshly
generated dataset) on synthetic test videos generated with a seed the bundled model never saw.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from scnn.batch import BatchResult, detect_videos
from scnn.detect import BUNDLED_MODEL, Detector
from scnn.errors import ScnnError
from scnn.evaluate import PROTOCOLS, EvaluationResult, evaluate
from scnn.fileio import atomic_write_text
from scnn.formats import write_detections
from scnn.records import GroundTruth
from scnn.report import plot_timeline
from scnn.synth import SynthConfig, generate

DEMO_SEED = 2026  # the bundled model was trained on seed 0's videos
DEMO_VIDEOS = 3
DEMO_DURATION_S = (60.0, 90.0)


@dataclass(frozen=True)
class DemoResult:
    """What a demo run produced: where, and the evaluation under each protocol."""

    out: Path
    model: Path
    num_videos: int
    num_detections: int
    failures: dict[str, str]
    results: dict[str, EvaluationResult]

    def summary(self) -> str:
        lines = [
            f"{self.num_detections} detections in {self.num_videos} synthetic test videos "
            f"(model: {self.model})",
        ]
        for name, result in self.results.items():
            at_05 = dict(zip(result.iou_thresholds, result.mean_ap, strict=True)).get(0.5)
            lines.append(
                f"  {name:<12} mAP@0.5 {at_05:.3f}   average mAP over "
                f"{result.iou_thresholds[0]:g}..{result.iou_thresholds[-1]:g}: "
                f"{result.average_map:.3f}"
            )
        lines.append(f"report: {self.out} (detections.json, metrics.json, timelines/*.png)")
        for reason in self.failures.values():
            lines.append(f"failed: {reason}")
        return "\n".join(lines)


def write_report(
    out: Path, gt: GroundTruth, result: BatchResult, classes: tuple[str, ...]
) -> dict[str, EvaluationResult]:
    """Detections (JSON, CSV), metrics under the three protocols, one timeline per video."""
    detections = result.all_detections()
    write_detections(out / "detections.json", detections, classes)
    write_detections(out / "detections.csv", detections, classes)
    results = {name: evaluate(gt, detections, name) for name in PROTOCOLS}
    metrics = {name: r.to_dict() for name, r in results.items()}
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    for video, video_detections in result.detections.items():
        plot_timeline(
            out / "timelines" / f"{video}.png",
            video,
            gt.durations_s.get(video, max((d.end_s for d in video_detections), default=1.0)),
            classes,
            video_detections,
            [i for i in gt.instances if i.video == video],
        )
    return results


def train_cpu_default(out: Path, *, quiet: bool = False) -> Path:
    """Generate the default synthetic dataset and train the CPU default config on it, as
    ``scnn synth OUT/data && scnn train OUT/data --out OUT/run`` would."""
    from scnn.config import CPU_DEFAULT_CONFIG, load_config
    from scnn.training_job import train_model

    generate(out / "data", SynthConfig(), quiet=quiet)
    config = load_config(CPU_DEFAULT_CONFIG)
    return train_model(
        config,
        out / "data" / "annotations.json",
        out / "data" / "videos",
        out / "run",
        progress=not quiet,
    )


def run_demo(
    out: str | Path,
    *,
    model: str | Path | None = None,
    videos: int = DEMO_VIDEOS,
    seed: int = DEMO_SEED,
    train: bool = False,
    quiet: bool = False,
) -> DemoResult:
    """Generate test videos, detect, evaluate under all protocols, draw timelines.

    ``train``: first generate the default synthetic dataset and train the three networks with
    the CPU default config (``scnn train``'s path), then use that model.
    """
    out = Path(out)
    if train:
        model = train_cpu_default(out / "train", quiet=quiet)
    detector = Detector.load(model)
    config = SynthConfig(
        num_classes=len(detector.classes),
        train_videos=0,
        val_videos=0,
        test_videos=videos,
        duration_range_s=DEMO_DURATION_S,
        seed=seed,
    )
    gt = generate(out / "test_data", config, quiet=quiet)
    if set(gt.classes) != set(detector.classes):
        raise ScnnError(f"the model's classes {detector.classes} are not the synthetic ones")
    paths = [out / "test_data" / "videos" / f"{video}.mp4" for video in gt.videos]
    result = detect_videos(detector, paths, quiet=quiet, keep_windows=False)
    results = write_report(out, gt, result, detector.classes)
    return DemoResult(
        out=out,
        model=BUNDLED_MODEL if model is None else Path(model),
        num_videos=len(result.detections),
        num_detections=sum(len(d) for d in result.detections.values()),
        failures=result.failures,
        results=results,
    )
