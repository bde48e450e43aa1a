"""Start and stop long-running child processes, tracked by PID so another process can stop them later."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from pathlib import Path

_PR_SET_PDEATHSIG = 1

# Children started by this process, kept referenced until reaped (a collected running Popen warns).
_children: dict[int, subprocess.Popen[bytes]] = {}


def die_with_parent() -> None:
    # Linux only: the kernel sends SIGTERM to the child when the thread that started it exits, so an
    # interrupted or killed test run leaves no control plane behind. Spawn from long-lived threads only.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(args: list[str], log_path: Path, *, attached: bool, env: dict[str, str] | None = None) -> int:
    """Start ``args`` in its own session, logging to ``log_path``; return its PID.

    ``attached`` processes die with their parent; detached ones (the demo) outlive it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent if attached else None,
            env=env,
        )
    _children[process.pid] = process
    return process.pid


def is_alive(pid: int, expected_executable: str | None = None) -> bool:
    """True while ``pid`` runs; with ``expected_executable`` also checks that the PID was not reused."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if _is_zombie(pid):
        _reap(pid)
        return False
    if expected_executable is None:
        return True
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(expected_executable.encode() in part for part in cmdline[:2])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, expected_executable: str | None = None, *, grace: float = 10.0) -> None:
    """SIGTERM the process group of ``pid``, then SIGKILL it after ``grace`` seconds."""
    child = _children.pop(pid, None)
    if child is not None:
        _signal_group(pid, signal.SIGTERM)
        try:
            child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(pid, signal.SIGKILL)
            child.wait(timeout=5)
        return
    if not is_alive(pid, expected_executable):
        return
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_alive(pid):
            return
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_alive(pid):
        time.sleep(0.05)


def terminate(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM one child started with ``subprocess.Popen``, then SIGKILL it after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill(pid: int) -> None:
    """SIGKILL at once, as a crash would."""
    _signal_group(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=5)
        return
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and is_alive(pid):
        time.sleep(0.02)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    _reap(pid)
