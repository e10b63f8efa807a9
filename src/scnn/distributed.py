"""Many processes, one job: the rank and world of a process, the process group, and how work
is split (training draw positions by rank, videos by duration).

Processes are started by PyTorch's own launcher, ``torchrun``, which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` (plus ``MASTER_ADDR``/``MASTER_PORT``
for the rendezvous) in each process's environment. Without them a process is a world of one
and nothing here talks to other processes, so the single-process path is the same code.
Collectives use gloo on CPU and NCCL on CUDA.
"""

from __future__ import annotations

import contextlib
import datetime
import heapq
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from scnn.errors import ScnnError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one job."""

    rank: int = 0  # 0 .. size-1 over all machines
    size: int = 1
    local_rank: int = 0  # 0 .. local_size-1 on this machine (its GPU index)
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone logs, writes checkpoints and merges outputs."""
        return self.rank == 0


SINGLE = World()


def world_from_env(env: Mapping[str, str] = os.environ) -> World | None:
    """The World torchrun describes in ``env``, or None when not started by torchrun."""
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        size = int(env["WORLD_SIZE"])
        world = World(
            rank=int(env["RANK"]),
            size=size,
            local_rank=int(env.get("LOCAL_RANK", env["RANK"])),
            local_size=int(env.get("LOCAL_WORLD_SIZE", size)),
        )
    except ValueError as exc:
        raise ScnnError(f"torchrun environment is not numeric: {exc}") from exc
    if not 0 <= world.rank < world.size:
        raise ScnnError(f"RANK {world.rank} is outside WORLD_SIZE {world.size}")
    return world


def threads_per_process(world: World, cpu_count: int | None = None) -> int:
    """Torch threads for each of the ``local_size`` processes sharing this machine's cores,
    so they do not oversubscribe them (2 cores, 2 processes: 1 thread each)."""
    cores = cpu_count or os.cpu_count() or 1
    return max(1, cores // world.local_size)


def local_device(device: torch.device, world: World) -> torch.device:
    """The device of this process: with several processes, a CUDA device without an index
    becomes the GPU of the process's local rank (one GPU per process, as NCCL wants)."""
    if device.type == "cuda" and world.size > 1:
        index = world.local_rank if device.index is None else device.index
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return device


def backend_for(device: torch.device) -> str:
    """The collectives' library for tensors on ``device``: NCCL on CUDA, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def process_group(world: World, backend: str, *, timeout_s: float | None = None) -> Iterator[None]:
    """Join the job's process group for the duration of the block (nothing for one process).

    The rendezvous address comes from torchrun's environment (``env://``). ``timeout_s``:
    how long a collective waits for the slowest rank (torch's default when None)."""
    if world.size == 1 or dist.is_initialized():
        yield
        return
    timeout = None if timeout_s is None else datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, rank=world.rank, world_size=world.size, timeout=timeout)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier(world: World) -> None:
    """Wait until every process gets here."""
    if world.size > 1:
        dist.barrier()


@contextlib.contextmanager
def local_rank_first(world: World) -> Iterator[None]:
    """Run the block on local rank 0 of each machine first, then on the other ranks: so one
    process per machine fills a cache (decoded frames) and the others find it filled."""
    if world.local_rank != 0:
        barrier(world)
    yield
    if world.local_rank == 0:
        barrier(world)


def broadcast(value: Any, world: World) -> Any:
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if world.size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(value: float, world: World, device: torch.device) -> float:
    """The mean of each rank's ``value``."""
    if world.size == 1:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / world.size


def any_rank(flag: bool, world: World, device: torch.device) -> bool:
    """Whether ``flag`` is set on any rank (so all ranks stop at the same step)."""
    if world.size == 1:
        return flag
    count = torch.tensor([int(flag)], device=device)
    dist.all_reduce(count)
    return bool(count.item())


@dataclass(frozen=True)
class DrawPositions:
    """The draw positions (see dataset.ClipDataset) one rank loads, in order: a sampler.

    One process with global batch B draws positions s·B … s·B+B−1 at step s. With W ranks of
    B/W each, rank r draws the r-th slice of that range, so the ranks of one step together
    draw exactly the clips one process would: the union of the ranks' batches is the
    single-process batch, and averaging their gradients (DDP) gives its gradient. Positions
    depend only on the step, so a run resumes at any step with any number of ranks.
    """

    start_step: int  # first step to draw (0-based), e.g. the step of a checkpoint
    end_step: int  # one past the last step
    global_batch: int  # clips per step over all ranks
    world: World = SINGLE

    def __post_init__(self) -> None:
        if self.global_batch % self.world.size:
            raise ScnnError(
                f"batch_size {self.global_batch} (the global batch) is not divisible by "
                f"the {self.world.size} processes"
            )

    @property
    def rank_batch(self) -> int:
        """Clips per step on this rank."""
        return self.global_batch // self.world.size

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step) * self.rank_batch

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.end_step):
            first = step * self.global_batch + self.world.rank * self.rank_batch
            yield from range(first, first + self.rank_batch)


def shard_by_duration(durations_s: Sequence[float], num_shards: int) -> list[list[int]]:
    """Split items over ``num_shards`` so the shards' total durations are close: greedy,
    longest first, each item to the shard with the least so far (ties: the lower shard).
    Returns each shard's item indices in ascending order; the same input gives the same split.
    """
    shards: list[list[int]] = [[] for _ in range(num_shards)]
    loads = [(0.0, shard) for shard in range(num_shards)]
    order = sorted(range(len(durations_s)), key=lambda i: (-durations_s[i], i))
    for item in order:
        load, shard = heapq.heappop(loads)
        shards[shard].append(item)
        heapq.heappush(loads, (load + durations_s[item], shard))
    return [sorted(shard) for shard in shards]
