"""Speed of training: ``scnn.train.train`` in the straightforward setting and in its defaults,
and the network's training step alone (on a CPU: with glibc's default malloc and with
scnn.allocator's settings, each in a fresh process).

On its own (speed.py runs it among the others):

    python3 benchmarks/speed/speed_train.py --model cpu --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
from dataclasses import replace

import numpy as np
import torch
from harness import (
    LOCALIZATION,
    NUM_CLASSES,
    TRAIN_LOG,
    Bench,
    ClipConfig,
    DataConfig,
    Row,
    atomic_write_text,
    build_network,
    existing_model_dir,
    keep_large_allocations,
    load_config,
    load_model,
    matmul,
    native_bf16,
    overlap_loss,
    parse_args,
    parser,
    prepare_data,
    run_sections,
    sync,
    train,
)


def train_batch(device: torch.device) -> int:
    """Clips per training step in the train section."""
    return 64 if device.type == "cuda" else 16


def model_train_rate(model, clip: ClipConfig, device, batch: int, steps: int) -> float:
    """Clips/s of bf16 channels-last AdamW steps on one batch kept on the device (the
    network alone, no data loading)."""
    network = build_network(NUM_CLASSES + 1, model.options, clip)
    network.to(device, memory_format=torch.channels_last_3d).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-4)
    crop = clip.crop_size
    clips = torch.randn(batch, 3, 16, crop, crop, device=device).to(
        memory_format=torch.channels_last_3d
    )
    labels = torch.randint(0, NUM_CLASSES + 1, (batch,), device=device)
    ious = torch.rand(batch, device=device)
    times, last = [], time.perf_counter()
    for _ in range(steps):
        with torch.autocast(device.type, torch.bfloat16):
            logits = network(clips)
        loss = overlap_loss(logits.float(), labels, ious)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return batch / statistics.median(times[3:])  # the first steps warm caches and autotune


def measure(bench: Bench) -> None:
    """``scnn.train.train`` itself (localization stage: K + 1 outputs and the overlap
    loss), in the straightforward setting and in its defaults, one step per log record."""
    annotations = bench.work / "train_annotations.json"
    duration = bench.args.video_s
    starts = np.arange(2.0, duration - 8.0, 10.0)
    database = {
        bench.video.stem: {
            "subset": "training",
            "duration": duration,
            "annotations": [
                {"segment": [start, start + 1.0 + (k % 6)], "label": f"class{k % 5}"}
                for k, start in enumerate(starts)
            ],
        }
    }
    atomic_write_text(annotations, json.dumps({"database": database}))
    on_gpu = bench.device.type == "cuda"
    base_config = replace(
        load_config("synthetic_cpu", {"device": str(bench.device), "log_every": 1}),
        model=bench.size.options,
        clip=bench.size.clip,
        batch_size=train_batch(bench.device),
        steps=bench.args.train_steps,
        checkpoint_every=bench.args.train_steps,
        data=DataConfig(val_samples=0),
    )
    data = prepare_data(
        base_config, annotations, bench.video.parent, bench.work / "cache", progress=False
    )
    stage = replace(LOCALIZATION, init_from=None)
    flops = 3 * bench.gflops * 1e9  # forward + backward ≈ 3 forwards
    bf16 = native_bf16(bench.device)
    workers = 8 if on_gpu else base_config.workers  # the CPU config loads in-process
    defaults = f"{'bf16' if bf16 else 'fp32'} channels_last_3d, {workers} worker(s)"
    runs = [
        ("fp32 eager contiguous, loader in-process (baseline)", False, False, 0, ""),
        (f"defaults: {defaults}", True, True, workers, ""),
    ]
    if bench.args.train_compile:
        mode = bench.args.train_compile
        runs.append((f"compiled: {defaults}, compile({mode})", True, True, workers, mode))
    base = None
    for name, amp, channels_last, num_workers, mode in runs:
        config = replace(
            base_config,
            amp=amp,
            channels_last=channels_last,
            workers=num_workers,
            compile=mode,
        )
        out = bench.work / "train_runs" / name.split(":")[0].split(" ")[0]
        train(stage, config, data, out, progress=False)
        log = [json.loads(line) for line in (out / stage.name / TRAIN_LOG).open()]
        seconds = [config.batch_size / record["clips_per_s"] for record in log[3:]]
        rate = config.batch_size / statistics.median(seconds)
        base = base or rate
        bench.add(
            Row(
                "train",
                f"scnn.train, {name}, batch {config.batch_size}",
                rate,
                "clips/s",
                base,
                bench.bound("bf16" if amp and bf16 else "fp32", flops),
                f"slowest step {max(seconds) / statistics.median(seconds):.1f}x the median",
            )
        )
    if on_gpu:  # the network alone, batch resident on the GPU (the reference)
        rate = model_train_rate(
            load_model(bench.model_dir), bench.size.clip, bench.device, 64, bench.args.train_steps
        )
        bench.add(
            Row(
                "train",
                "bf16 channels_last_3d, model only, batch 64",
                rate,
                "clips/s",
                base,
                bench.bound("bf16", flops),
            )
        )
    else:
        allocator_rows(bench, base)


def allocator_rows(bench: Bench, base: float) -> None:
    """The network's training step alone in two fresh processes: glibc's default malloc,
    then scnn.allocator's settings (this process, like scnn.train, has them from the
    start)."""
    for mode, name in (
        ("default", "glibc's default malloc"),
        ("keep", "keep_large_allocations"),
    ):
        command = [*bench.child_command(__file__), "--train-rate-of", mode]
        rate = float(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        bench.add(
            Row(
                "train",
                f"bf16 channels_last_3d, model only, batch {train_batch(bench.device)}, "
                f"fresh process, {name}",
                rate,
                "clips/s",
                base,
                bench.bound("bf16", 3 * bench.gflops * 1e9),
            )
        )


def train_rate_of(args: argparse.Namespace) -> None:
    """Child process of the train section: the network's training step alone, with glibc's
    default malloc or scnn.allocator's settings; prints clips/s."""
    if args.train_rate_of == "keep":
        keep_large_allocations()
    model = load_model(existing_model_dir(args))
    device = torch.device(args.device)
    print(model_train_rate(model, model.clip, device, train_batch(device), args.train_steps))


def main() -> None:
    command_line = parser(__doc__)
    command_line.add_argument("--train-rate-of", default=None, help=argparse.SUPPRESS)
    args = parse_args(command_line)
    if args.train_rate_of:
        train_rate_of(args)
    else:
        run_sections(args, [matmul, measure])


if __name__ == "__main__":
    main()
