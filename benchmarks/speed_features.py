"""Speed of `scnn features` (features/s and times real time) next to `scnn detect` on the same
video and model in the same run, and the peak RSS of feature extraction on a 10-minute and a
2-hour video, each in a fresh process.

    python3 benchmarks/speed_features.py --model cpu --threads 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from harness import (
    FPS,
    Bench,
    Detector,
    Extractor,
    FeatureConfig,
    Row,
    existing_model_dir,
    model_source,
    num_frames,
    own_peak_rss_mb,
    probe,
    section_or_child_main,
)
from speed_memory import peak_rss_rows

LAYER = "fc6"  # the default of `scnn features`


def extractor(args: argparse.Namespace, model_dir: Path, precision: str = "auto") -> Extractor:
    """`scnn features`' extractor of this run's model: localization network, fc6, snippets of
    16 frames every 8."""
    config = FeatureConfig(layer=LAYER, precision=precision, batch_size=args.batch)
    return Extractor(model_source(model_dir), config, args.device)


def measure(bench: Bench) -> None:
    """Detection, then feature extraction in fp32 and in the automatic precision, on the
    test video; then each memory video's features in a child process."""
    duration_s = num_frames(probe(bench.video)) / FPS
    detector = Detector.load(
        bench.model_dir,
        device=str(bench.device),
        proposal_threshold=bench.threshold,
        batch_size=bench.args.batch,
    )
    start = time.perf_counter()
    detector(bench.video)
    detect_speed = duration_s / (time.perf_counter() - start)
    bench.add(Row("features", "scnn detect, same video and model", detect_speed, "x real time"))
    for precision in ("fp32", "auto"):
        features = extractor(bench.args, bench.model_dir, precision)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = features(bench.video, Path(out) / "video.npy")
            wall_s = time.perf_counter() - start
        speed = duration_s / wall_s
        bench.add(
            Row(
                "features",
                f"scnn features {LAYER}, 16 frames every 8 "
                f"({'bf16' if features.bf16 else 'fp32'}), batch {features.batch_size}",
                speed,
                "x real time",
                detect_speed,
                note=f"{result.rows / wall_s:.0f} features/s, {result.rows} x {result.dim}",
            )
        )
    bench.extra["features_peak_rss_mb"] = peak_rss_rows(bench, __file__, "features")


def peak_rss_of(args: argparse.Namespace) -> None:
    """Child process: the features of one video, then the peak RSS in MB."""
    with tempfile.TemporaryDirectory() as out:
        extractor(args, existing_model_dir(args))(args.peak_rss_of, Path(out) / "video.npy")
    print(own_peak_rss_mb())


if __name__ == "__main__":
    section_or_child_main(__doc__, measure, peak_rss_of)
