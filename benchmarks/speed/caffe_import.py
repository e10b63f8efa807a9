"""Memory and time of `scnn import-caffe` on a full-size pair of the authors' networks.

Writes a random-weight proposal and localization .caffemodel (the authors' C3D, 2 and 21
outputs, 312 MB each) and a mean file with the tests' writer (tests/caffe_writer.py), then
runs the import in a child process and reports its wall time and peak RSS.

    python3 benchmarks/speed/caffe_import.py /tmp/caffe_pair
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from caffe_writer import c3d_arrays, write_caffemodel, write_mean  # noqa: E402


def write_pair(folder: Path) -> list[str]:
    """The import command's arguments for a freshly written pair in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    proposal = write_caffemodel(folder / "SCNN_uniform16_binary_iter_30000", c3d_arrays(rng, 2))
    localization = write_caffemodel(
        folder / "SCNN_uniform16_cls20_with_overlap_loss_iter_30000", c3d_arrays(rng, 21)
    )
    cube = rng.uniform(60, 140, (3, 16, 128, 171)).astype(np.float32)
    mean = write_mean(folder / "train01_16_128_171_mean.binaryproto", cube)
    return [
        "--proposal", str(proposal), "--localization", str(localization),
        "--mean", str(mean), "-o", str(folder / "model"),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="where the pair and the model directory go")
    folder = parser.parse_args().folder
    arguments = write_pair(folder)
    sizes_mb = [p.stat().st_size / 1e6 for p in folder.iterdir() if p.is_file()]
    start = time.perf_counter()
    command = [sys.executable, "-m", "scnn", "--quiet", "import-caffe", *arguments]
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    written_mb = sum(p.stat().st_size for p in (folder / "model").iterdir()) / 1e6
    print(f"input files: {', '.join(f'{s:.1f}' for s in sorted(sizes_mb))} MB")
    print(f"import-caffe: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB, wrote {written_mb:.0f} MB")


if __name__ == "__main__":
    main()
