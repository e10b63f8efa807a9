"""Speed of `scnn features` (features/s and times real time) next to `scnn detect` on the same
video and model in the same run (its memory: speed_memory.py).

    python3 benchmarks/speed/speed_features.py --model cpu --threads 2
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
    model_source,
    num_frames,
    probe,
    section_main,
)

LAYER = "fc6"  # the default of `scnn features`


def extractor(args: argparse.Namespace, model_dir: Path, precision: str = "auto") -> Extractor:
    """`scnn features`' extractor of this run's model: localization network, fc6, snippets of
    16 frames every 8."""
    config = FeatureConfig(layer=LAYER, precision=precision, batch_size=args.batch)
    return Extractor(model_source(model_dir), config, args.device)


def measure(bench: Bench) -> None:
    """Detection, then feature extraction in fp32 and in the automatic precision, on the
    test video."""
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


if __name__ == "__main__":
    section_main(__doc__, measure)
