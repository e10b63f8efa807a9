"""A ``scnn`` command that stops at a chosen call of a library function until the test lets it
go: the tests of Ctrl-C and SIGKILL act at a known point, whatever the machine's load.

The command runs a small script that wraps the function; at the chosen call it writes its
process id into the FIFO ``reached`` (:meth:`Pause.wait` returns it once the command is there),
then opens the FIFO ``go`` for reading, where it waits until :meth:`Pause.release` (or for
ever, for a SIGKILL).
The waits on a process that may have ended meanwhile retry every 10 ms: they only make sure a
test cannot hang, they decide nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

SCRIPT = """\
import importlib, os, sys
from scnn import cli

owner = importlib.import_module({module!r})
for name in {owners!r}:
    owner = getattr(owner, name)
original = getattr(owner, {function!r})
calls = 0


def paused(*args, **kwargs):
    global calls
    calls += 1
    if calls == {at_call}:
        with open({reached!r}, "w") as reached:
            reached.write(str(os.getpid()))
        open({go!r}).close()
    return original(*args, **kwargs)


setattr(owner, {function!r}, paused)
sys.exit(cli.main(sys.argv[1:]))
"""


class Pause:
    """``target`` is ``module:function`` or ``module:Class.method``; the ``at_call``-th call
    (from 1) waits."""

    def __init__(self, folder: Path, target: str, at_call: int):
        module, _, path = target.partition(":")
        *owners, function = path.split(".")
        folder.mkdir(parents=True, exist_ok=True)
        self.reached, self.go = folder / "reached", folder / "go"
        os.mkfifo(self.reached)
        os.mkfifo(self.go)
        self.script = folder / "paused_scnn.py"
        self.script.write_text(
            SCRIPT.format(
                module=module,
                owners=owners,
                function=function,
                at_call=at_call,
                reached=str(self.reached),
                go=str(self.go),
            )
        )

    @property
    def command(self) -> list[str]:
        """The command line that stands for ``scnn`` (``python -m scnn``)."""
        return [sys.executable, str(self.script)]

    def wait(self, process: subprocess.Popen) -> int:
        """Return once ``process`` (or a process it started) has reached the call, with the
        id of the process that did; fail if ``process`` ends first."""
        passed = threading.Event()
        watcher = threading.Thread(target=self._unblock, args=(process, passed), daemon=True)
        watcher.start()
        with open(self.reached) as reached:  # opened once the command, or the watcher, opens it
            passed.set()
            pid = reached.read()
        assert process.poll() is None, f"the command ended ({process.returncode}) before the call"
        return int(pid)

    def _unblock(self, process: subprocess.Popen, passed: threading.Event) -> None:
        """Once ``process`` has ended, open ``reached`` in its place until :meth:`wait` is past
        it (opening fails while nobody reads it yet)."""
        process.wait()
        while not passed.is_set():
            try:
                os.close(os.open(self.reached, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                passed.wait(0.01)

    def release(self, process: subprocess.Popen) -> None:
        """Let the paused command go on, unless it has ended meanwhile (a signal it got while
        waiting may end it: then nobody opens ``go`` any more)."""
        while process.poll() is None:
            try:
                os.close(os.open(self.go, os.O_WRONLY | os.O_NONBLOCK))
                return
            except OSError:  # not waiting on it yet, or no more
                time.sleep(0.01)
