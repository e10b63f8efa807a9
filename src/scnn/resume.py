"""Resume by record: a batch over many videos (``scnn detect`` under torchrun, ``scnn
features``) keeps one JSON record per finished video in a folder, keyed by a fingerprint of
everything its output depends on, so that a re-run, or a killed job started again, skips the
videos done with the same settings (failed videos are tried again). Under torchrun the videos
still to do are shared out over the ranks, balanced by duration.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from scnn import distributed
from scnn.clips import InputConvention
from scnn.distributed import World
from scnn.errors import ScnnError
from scnn.fileio import atomic_write_text
from scnn.modelfile import state_bytes
from scnn.video import probe

log = logging.getLogger(__name__)

# Ranks that finish their share early wait for the slowest at the final barrier.
WAIT_TIMEOUT_S = 7 * 24 * 3600


def fingerprint(
    networks: Iterable[torch.nn.Module], convention: InputConvention, settings: Mapping[str, Any]
) -> str:
    """A digest of what a batch's outputs depend on: the networks' weights, their input
    (``convention``, its mean cube included) and the other ``settings`` (JSON values)."""
    digest = hashlib.sha256()
    for network in networks:
        digest.update(state_bytes(network))
    if convention.mean_cube is not None:
        digest.update(convention.mean_cube.numpy().tobytes())
    described = {**settings, "input": convention.describe()}
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def duration_s(video: Path) -> float:
    """The video's duration for balancing; 0 for one that cannot be probed (it fails fast)."""
    try:
        return probe(video).duration_s
    except ScnnError:
        return 0.0


@dataclass(frozen=True)
class Records:
    """The records in ``folder``, ``<video stem>.json`` each, of the videos done with the
    settings ``key``; ``output(video)`` is the file a video done leaves, without which its
    record does not count."""

    folder: Path
    key: str
    output: Callable[[Path], Path]

    def path(self, video: Path) -> Path:
        return self.folder / f"{video.stem}.json"

    def read(self, video: Path) -> dict:
        """The record of ``video``; {} when absent, stale (other settings) or damaged. One of
        another video of the same name, or of a video done whose output is gone, is absent."""
        try:
            record = json.loads(self.path(video).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        if not isinstance(record, dict) or record.get("key") != self.key:
            return {}
        if record.get("video") != str(video.resolve()):
            return {}
        if record.get("status") == "done" and not self.output(video).is_file():
            return {}
        return record

    def is_done(self, video: Path) -> bool:
        return self.read(video).get("status") == "done"

    def forget(self, video: Path) -> None:
        """Remove ``video``'s record: before its outputs are replaced, so that a record on
        disk never pairs with the outputs of another run."""
        self.path(video).unlink(missing_ok=True)

    def write(self, video: Path, result: Mapping[str, Any]) -> None:
        """Record ``video``'s ``result`` (its ``status``, "done" or "failed", and what goes
        with it), atomically."""
        record = {"video": str(video.resolve()), "key": self.key, **result}
        atomic_write_text(self.path(video), json.dumps(record) + "\n")


@contextmanager
def shared_out(videos: Sequence[Path], records: Records, world: World) -> Iterator[list[Path]]:
    """This rank's share of the ``videos`` not done yet, inside a gloo process group (none for
    one process); the block's end waits for every rank, so that rank 0 then reads every
    record."""
    with distributed.process_group(world, "gloo", timeout_s=WAIT_TIMEOUT_S):
        plan: list[list[str]] = []
        if world.is_main:
            todo = [video for video in videos if not records.is_done(video)]
            done = len(videos) - len(todo)
            log.info("%d of %d videos already done (%s)", done, len(videos), records.folder)
            shards = distributed.shard_by_duration([duration_s(v) for v in todo], world.size)
            plan = [[str(todo[i]) for i in shard] for shard in shards]
        plan = distributed.broadcast(plan, world)
        yield [Path(video) for video in plan[world.rank]]
        distributed.barrier(world)
