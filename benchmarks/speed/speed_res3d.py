"""Res3D-18 against C3D: multiply-adds per 16-frame clip, counted from each network, and
clips/s of detection's inference copies on this machine in one run.

Both networks at full size (16×112×112 clips, the authors' C3D-v1.0 and C3D-v1.1 networks
with random weights), as `scnn detect` runs them (pipeline.inference_network: batch norm
folded, channels-last; bf16 weights for bf16) and in its CPU batch (pipeline.cpu_batch_size).
Each setting is measured ``--repeats`` times, the networks alternating, and the best rate is
kept: the least disturbed estimate on a shared machine.

    python3 benchmarks/speed/speed_res3d.py --threads 2
"""

from __future__ import annotations

import argparse

import torch
from harness import best_rate

from scnn.allocator import keep_large_allocations
from scnn.caffe import CAFFE_OPTIONS
from scnn.caffe_res3d import RES3D_CONVENTION, RES3D_OPTIONS
from scnn.model import build_network, clip_gflops
from scnn.pipeline import inference_network
from scnn.precision import native_bf16
from scnn.runtime import cpu_batch_size

NETWORKS = {"C3D (C3D-v1.0)": CAFFE_OPTIONS, "Res3D-18 (C3D-v1.1)": RES3D_OPTIONS}


def conv_multiply_adds(network: torch.nn.Module) -> float:
    """G multiply-adds of the convolutions alone for one clip (clip_gflops counts the fc
    layers too): the total less each linear layer's weights, once per clip."""
    linear = sum(m.weight.numel() for m in network.modules() if isinstance(m, torch.nn.Linear))
    return clip_gflops(network) / 2 - linear / 1e9


def rate(network: torch.nn.Module, bf16: bool, seconds: float) -> float:
    """Clips/s of ``network``'s inference copy on random clips, in detection's CPU batch."""
    device = torch.device("cpu")
    copy = inference_network(network, device, bf16)
    batch = cpu_batch_size(network, bf16)
    dtype = torch.bfloat16 if bf16 else torch.float32
    clips = torch.randn(batch, 3, 16, 112, 112, dtype=dtype)
    clips = clips.contiguous(memory_format=torch.channels_last_3d)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return copy(clips)

    return best_rate(forward, batch, device, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=6.0, help="per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    keep_large_allocations()  # as scnn detect on a CPU
    torch.manual_seed(0)
    networks = {
        name: build_network(21, options, RES3D_CONVENTION).eval()
        for name, options in NETWORKS.items()
    }
    precisions = [False, True] if native_bf16(torch.device("cpu")) else [False]
    best: dict[tuple[str, bool], float] = {}
    for _ in range(args.repeats):
        for bf16 in precisions:
            for name, network in networks.items():
                measured = rate(network, bf16, args.seconds)
                best[name, bf16] = max(best.get((name, bf16), 0.0), measured)
    torch.set_num_threads(threads)

    print(f"{args.threads} torch thread(s)")
    columns = " | ".join(f"{'bf16' if b else 'fp32'} clips/s" for b in precisions)
    print(f"| network | conv G multiply-adds / clip | GFLOP / clip | parameters | {columns} |")
    print("|---|---|---|---|" + "---|" * len(precisions))
    for name, network in networks.items():
        parameters = sum(p.numel() for p in network.parameters())
        rates = " | ".join(f"{best[name, b]:.2f}" for b in precisions)
        print(
            f"| {name} | {conv_multiply_adds(network):.2f} | {clip_gflops(network):.1f} | "
            f"{parameters / 1e6:.1f} M | {rates} |"
        )
    base, other = NETWORKS
    for bf16 in precisions:
        ratio = best[other, bf16] / best[base, bf16]
        print(f"{'bf16' if bf16 else 'fp32'}: Res3D-18 / C3D clips/s = {ratio:.2f}")


if __name__ == "__main__":
    main()
