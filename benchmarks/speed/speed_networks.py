"""Speed of the proposal network alone, from the fp32 eager baseline to the Detector's own
inference copies, and of the Detector's localization network.

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_networks.py --model cpu --threads 2
"""

from __future__ import annotations

import copy
import time

import torch
from harness import Bench, Row, best_rate, inference_network, load_model, native_bf16, section_main


def network_rate(
    bench: Bench,
    network: torch.nn.Module,
    batch: int,
    channels_last: bool,
    dtype: torch.dtype = torch.float32,
    autocast: bool = False,
) -> float:
    """Clips/s of inference on one random batch kept on the device."""
    memory = torch.channels_last_3d if channels_last else torch.contiguous_format
    network = network.to(bench.device, memory_format=memory).eval()
    crop = bench.size.clip.crop_size
    x = torch.randn(batch, 3, 16, crop, crop, device=bench.device, dtype=dtype)
    x = x.contiguous(memory_format=memory)

    def forward():
        with (
            torch.inference_mode(),
            torch.autocast(bench.device.type, torch.bfloat16, enabled=autocast),
        ):
            return network(x)

    return best_rate(forward, batch, bench.device, bench.args.seconds)


def measure(bench: Bench) -> None:
    """The proposal network alone: the baseline, then the steps to the Detector's own
    networks (``inference_network``: batch norm folded, channels-last, bf16 weights)."""
    model = load_model(bench.model_dir)
    flops = bench.gflops * 1e9
    base = network_rate(bench, copy.deepcopy(model.proposal), bench.baseline_batch, False)
    bench.add(
        Row(
            "proposal",
            f"fp32 eager contiguous, batch {bench.baseline_batch} (baseline)",
            base,
            "clips/s",
            base,
            bench.bound("fp32", flops),
        )
    )
    fp32 = inference_network(model.proposal, bench.device, bf16=False)
    bf16 = inference_network(model.proposal, bench.device, bf16=True)
    runs = [
        ("fp32", "fp32 channels_last_3d, BN folded", fp32, torch.float32, False),
        ("autocast", "bf16 autocast channels_last_3d, BN folded", fp32, torch.float32, True),
        (
            "bf16",
            "bf16 weights channels_last_3d, BN folded (Detector)",
            bf16,
            torch.bfloat16,
            False,
        ),
    ]
    for key, name, network, dtype, autocast in runs:
        value = network_rate(bench, network, bench.batch, True, dtype, autocast)
        precision = "fp32" if key == "fp32" else "bf16"
        bench.add(
            Row(
                "proposal",
                f"{name}, batch {bench.batch}",
                value,
                "clips/s",
                base,
                bench.bound(precision, flops),
            )
        )
        bench.extra[f"proposal_{key}"] = value
    if bench.args.compile:
        start = time.perf_counter()
        compiled = torch.compile(bf16, mode=bench.args.compile, dynamic=False)
        network_rate(bench, compiled, bench.batch, True, torch.bfloat16)  # compiles
        compile_s = time.perf_counter() - start
        value = network_rate(bench, compiled, bench.batch, True, torch.bfloat16)
        bench.add(
            Row(
                "proposal",
                f"bf16 weights channels_last_3d compile({bench.args.compile}), batch {bench.batch}",
                value,
                "clips/s",
                base,
                bench.bound("bf16", flops),
                f"compiled in {compile_s:.0f} s",
            )
        )
        bench.extra["proposal_compiled"] = value
    use_bf16 = native_bf16(bench.device)
    localization = inference_network(model.localization, bench.device, use_bf16)
    dtype = torch.bfloat16 if use_bf16 else torch.float32
    value = network_rate(bench, localization, bench.batch, True, dtype)
    bench.add(
        Row(
            "localization",
            f"Detector's ({'bf16' if use_bf16 else 'fp32'}), batch {bench.batch}",
            value,
            "clips/s",
            None,
            bench.bound("bf16" if use_bf16 else "fp32", flops),
        )
    )


if __name__ == "__main__":
    section_main(__doc__, measure)
