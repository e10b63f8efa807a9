"""Many processes: sharding helpers, and 2 gloo processes under torchrun against one process
for training (same weights). Sharded detection: test_sharded.py."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import torch
from launch import torchrun
from safetensors.torch import load_file
from tiny import SYNTH, TINY, toml_text

from scnn import cli, dataset
from scnn.distributed import (
    DrawPositions,
    World,
    shard_by_duration,
    threads_per_process,
    world_from_env,
)
from scnn.errors import ScnnError
from scnn.synth import generate

# --- the helpers, with hand-computed answers ---------------------------------------------


def test_world_from_torchrun_environment():
    assert world_from_env({}) is None
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = world_from_env(env)
    assert world == World(rank=3, size=4, local_rank=1, local_size=2) and not world.is_main
    with pytest.raises(ScnnError, match="RANK 4 is outside WORLD_SIZE 4"):
        world_from_env({**env, "RANK": "4"})
    assert threads_per_process(World(0, 2, 0, 2), cpu_count=2) == 1
    assert threads_per_process(World(0, 8, 0, 8), cpu_count=2) == 1
    assert threads_per_process(World(0, 16, 3, 8), cpu_count=96) == 12


def test_draw_positions_of_two_ranks_make_up_the_global_batch():
    # Global batch 6 from step 1 (resumed) to step 3: one process draws 6..17.
    ranks = [list(DrawPositions(1, 3, 6, World(r, 2, r, 2))) for r in range(2)]
    assert ranks == [[6, 7, 8, 12, 13, 14], [9, 10, 11, 15, 16, 17]]
    assert list(DrawPositions(1, 3, 6)) == list(range(6, 18))
    assert len(DrawPositions(1, 3, 6, World(1, 2, 1, 2))) == 6
    three = [list(DrawPositions(0, 1, 6, World(r, 3))) for r in range(3)]
    assert three == [[0, 1], [2, 3], [4, 5]]
    with pytest.raises(ScnnError, match="batch_size 6 .* not divisible by the 4 processes"):
        DrawPositions(0, 1, 6, World(0, 4))


def test_shard_by_duration_greedy_longest_first():
    # 10→A; 7→B; 6→B (7 < 10); 5→A (10 < 13); 2→B (13 < 15). Totals 15 and 15.
    assert shard_by_duration([10, 7, 6, 5, 2], 2) == [[0, 3], [1, 2, 4]]
    assert shard_by_duration([3, 3, 3], 2) == [[0, 2], [1]]  # ties go to the lower shard
    assert shard_by_duration([1.0], 3) == [[0], [], []]
    assert shard_by_duration([], 2) == [[], []]


# The shared tiny config, changed where these tests depend on it: 4 steps, logged each step
# and checkpointed every 2 (the resume test stops in step 3), a smaller validation set, and
# no batch norm: on CPU (gloo) each rank would normalise with its own half-batch statistics;
# fp32: bf16 rounds each half-batch's activations differently from the whole batch's.
TINY_TOML = toml_text(
    {
        **TINY,
        "amp": False,
        "steps": 4,
        "log_every": 1,
        "checkpoint_every": 2,
        "model": {**TINY["model"], "batch_norm": False},
        "data": {"val_samples": 16},
    }
)
# Float sums in another order (DDP averages two half-batch gradients). AdamW divides each
# gradient by its running scale, so a weight whose gradient nearly cancels takes that order's
# rounding into a visible step: on an AVX-512 CPU one weight of 32 768 moved 1.4e-5. Ranks that
# did not average their gradients would differ by about lr = 3e-3 a step: 1e-4 absolute.
WEIGHTS_ATOL = 1e-4


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    """The synthetic dataset, a config file, and one process's proposal training (the
    reference; it also fills the frame cache the other runs share)."""
    root = tmp_path_factory.mktemp("dist")
    generate(root / "synth", SYNTH, quiet=True)
    (root / "tiny.toml").write_text(TINY_TOML)
    assert cli.main(train_argv(root, root / "one")) == 0
    return root


def train_argv(root: Path, out: Path) -> list[str]:
    return [
        "--quiet",
        "train",
        str(root / "synth"),
        "--out",
        str(out),
        "--config",
        str(root / "tiny.toml"),
        "--stage",
        "proposal",
        "--cache-dir",
        str(root / "cache"),
    ]


def assert_same_weights(first: Path, second: Path) -> None:
    one = load_file(first / "proposal" / "weights.safetensors")
    two = load_file(second / "proposal" / "weights.safetensors")
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=0, atol=WEIGHTS_ATOL)


def test_two_gloo_processes_train_the_weights_of_one(run_setup):
    root = run_setup
    done = torchrun(*train_argv(root, root / "two")[1:])
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(root / "one", root / "two")
    saved = json.loads((root / "two" / "config.json").read_text())
    assert (saved["batch_size"], saved["processes"], saved["batch_per_process"]) == (8, 2, 4)
    assert saved["lr"] == 3e-3
    records = (root / "two" / "proposal" / "log.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in records] == [1, 2, 3, 4]  # rank 0 alone logs
    one_log = (root / "one" / "proposal" / "log.jsonl").read_text().splitlines()
    for mine, theirs in zip(records, one_log, strict=True):  # the loss of the global batch
        assert json.loads(mine)["loss"] == pytest.approx(json.loads(theirs)["loss"], abs=1e-5)


def test_resume_with_another_number_of_processes(run_setup, monkeypatch):
    """Ctrl-C one process during step 3 (checkpoint at 3), resume with 2 processes."""
    root = run_setup
    real_getitems = dataset.ClipDataset.__getitems__

    def ctrl_c_during_step_3(self, indices):
        if self.train and 2 * 8 + 1 in indices:
            os.kill(os.getpid(), signal.SIGINT)
        return real_getitems(self, indices)

    monkeypatch.setattr(dataset.ClipDataset, "__getitems__", ctrl_c_during_step_3)
    assert cli.main(train_argv(root, root / "resumed")) == cli.EXIT_INTERRUPTED
    checkpoint = torch.load(root / "resumed" / "proposal" / "checkpoint.pt", weights_only=True)
    assert checkpoint["step"] == 3
    done = torchrun(*train_argv(root, root / "resumed")[1:], "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_weights(root / "one", root / "resumed")
    steps = [json.loads(r)["step"] for r in (root / "resumed/proposal/log.jsonl").open()]
    assert steps == [1, 2, 3, 4]  # step 4 by the two processes, after 1-3 by one
