"""torchrun on localhost, for the tests of many processes (test_distributed.py,
test_sharded.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun(
    *args: str, processes: int = 2, timeout_s: float = 600, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """``torchrun --nproc-per-node N -m scnn ARGS`` on localhost (gloo, 1 thread each), in
    the folder ``cwd`` (None: this process's)."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        str(processes),
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(free_port()),
        "-m",
        "scnn",
        "--quiet",
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False, cwd=cwd
    )
