"""A stage's checkpoint: a round trip restores what a resumed run continues from; a file that
is not a plain checkpoint is refused without running it."""

from __future__ import annotations

import os

import pytest
import torch

from scnn.checkpoint import load_checkpoint, save_checkpoint
from scnn.errors import ScnnError


def solver(
    seed: int,
) -> tuple[torch.nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.StepLR]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return model, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def test_round_trip_restores_weights_optimiser_schedule_and_random_state(tmp_path):
    model, optimizer, scheduler = solver(0)
    for _ in range(3):
        model(torch.randn(5, 4)).sum().backward()
        optimizer.step()
        scheduler.step()
    save_checkpoint(tmp_path / "checkpoint.pt", 3, model, optimizer, scheduler)
    expected_draw = torch.rand(3)

    restored, restored_optimizer, restored_scheduler = solver(1)
    path = tmp_path / "checkpoint.pt"
    assert load_checkpoint(path, restored, restored_optimizer, restored_scheduler) == 3
    assert torch.equal(torch.rand(3), expected_draw)  # the random state of the saved step
    assert all(
        torch.equal(a, b) for a, b in zip(model.parameters(), restored.parameters(), strict=True)
    )
    assert restored_optimizer.param_groups[0]["lr"] == 0.05  # halved once, after step 2
    momentum = optimizer.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(restored_optimizer.state_dict()["state"][0]["momentum_buffer"], momentum)
    assert restored_scheduler.last_epoch == 3


class MakesAFolderWhenUnpickled:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_a_pickle_payload_or_garbage_is_refused_unrun(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "checkpoint.pt"
    torch.save({"step": MakesAFolderWhenUnpickled(marker)}, path)
    with pytest.raises(ScnnError, match="checkpoint.pt: cannot read checkpoint") as caught:
        load_checkpoint(path, *solver(0))
    assert not marker.exists()
    message = str(caught.value)  # what was refused, in one line, without advice to run it
    assert "GLOBAL posix.mkdir" in message and "\n" not in message
    assert "weights_only" not in message
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ScnnError, match="cannot read checkpoint") as caught:
        load_checkpoint(path, *solver(0))
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)
