"""No orphans: processes a command starts end when the command ends, even when it is killed by SIGKILL.

:func:`start` tags the command's environment with a run token (``EGOM2P_RUN_TOKENS``, inherited by
everything it starts: Prefect's temporary API server, a local Ray's GCS, raylet, dashboard and
runtime-env agents, Ray workers) and starts a watchdog, ``python -m egom2p.commands._reaper PID TOKEN``,
in a session of its own (so that a signal to the command's process group does not reach it). While
the command runs, the watchdog records its descendants every half second; once the command is gone
(its parent PID changes) it sends SIGTERM and, after a grace period, SIGKILL to every recorded
descendant still running and every process carrying the token, until none is left. The token is
read from ``/proc/<pid>/environ``, so a process is found even after it was re-parented or moved to
another session (the way Jenkins' ProcessTreeKiller finds a build's processes); the recorded tree
covers children forked without exec (their ``/proc`` environment predates the token). Processes the
command did not start (a Ray cluster or Prefect server it only connects to) are neither. Nested
commands append their token, so an outer command's watchdog also ends the inner one's processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

ENV = "EGOM2P_RUN_TOKENS"
_token: str | None = None


def start() -> str:
    """Tag this process's future children and start the watchdog (once per process); returns the token."""
    global _token
    if _token is None:
        token = uuid.uuid4().hex[:16]
        os.environ[ENV] = f"{os.environ.get(ENV, '')} {token}".strip()
        subprocess.Popen([sys.executable, "-m", "egom2p.commands._reaper", str(os.getpid()), token],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
        _token = token
    return _token


def tagged(token: str) -> list[int]:
    """PIDs of the processes whose environment carries ``token`` (this process excluded)."""
    key, me, out = f"{ENV}=".encode(), os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read()
        except OSError:  # gone, or not ours to read
            continue
        for item in env.split(b"\0"):
            if item.startswith(key) and token.encode() in item[len(key):].split():
                out.append(int(name))
                break
    return out


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(rest[1]), rest[0].decode(), rest[19].decode()


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every process below ``root`` (this process excluded)."""
    children: dict[int, list[int]] = {}
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (st := _stat(int(name))):
            stats[int(name)] = st
            children.setdefault(st[0], []).append(int(name))
    out, todo = {}, [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out[c] = stats[c][2]
            todo.append(c)
    out.pop(os.getpid(), None)
    return out


def reap(token: str, known: dict[int, str] | None = None, grace_s: float = 3.0, rounds: int = 20) -> int:
    """SIGTERM, then SIGKILL after ``grace_s``, every process carrying ``token`` and every ``known``
    {pid: start time} still running; returns how many were signalled."""
    signalled: set[int] = set()
    for _ in range(rounds):
        pids = sorted(set(tagged(token)) | {p for p, start in (known or {}).items()
                                            if (st := _stat(p)) and st[2] == start and st[1] != "Z"})
        if not pids:
            break
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in pids:
                try:
                    os.kill(pid, sig)
                    signalled.add(pid)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (grace_s if sig == signal.SIGTERM else 1.0)
            while time.monotonic() < deadline and (pids := [p for p in pids if _alive(p)]):
                time.sleep(0.1)
            if not pids:
                break
    return len(signalled)


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] != "Z"  # a zombie has ended


def main(argv: list[str]) -> int:
    parent, token = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the command
    known: dict[int, str] = {}
    while os.getppid() == parent:
        known.update(descendants(parent))
        time.sleep(0.5)
    reap(token, known)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
