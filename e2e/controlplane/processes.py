"""Start and stop long-running child processes, tracked by PID so another process can stop them later.

Every process the harness starts ends with it, however the harness ends: each runs in a process group of its own
(stopping it stops what it started), gets the parent-death signal when started from the main thread, and is
registered with a watchdog process (``watchdog.py``) that ends them all when this process is gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
WATCHDOG = Path(__file__).with_name("watchdog.py")

# Children started by this process, kept referenced until reaped (a collected running Popen warns).
_children: dict[int, subprocess.Popen[bytes]] = {}

_watchdog_lock = threading.Lock()
_watchdog: tuple[int, int] | None = None
"""The watchdog's PID and the write end of its pipe."""
_spared: set[int] = set()


def die_with_parent() -> None:
    # Linux only: the kernel signals the child when the *thread* that started it exits, not the process. Applied
    # only to children of the main thread (see ``_parent_death_signal``); the watchdog covers the rest.
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _parent_death_signal() -> Callable[[], None] | None:
    # From a worker thread (anyio.to_thread, an executor) the signal would come when that thread ends, long before
    # the harness does: such children rely on the watchdog alone.
    return die_with_parent if threading.current_thread() is threading.main_thread() else None


def _watchdog_pipe() -> int:
    """The write end of the watchdog's pipe, starting the watchdog if it does not run (or no longer runs).
    Call with ``_watchdog_lock`` held."""
    global _watchdog
    if _watchdog is None or _exited(_watchdog[0]):
        read_end, write_end = os.pipe()  # not inherited by other children: only this process holds the write end
        # posix_spawn, not Popen: the watchdog outlives this process by design (a Popen would warn at exit).
        pid = os.posix_spawn(
            sys.executable, [sys.executable, "-S", "-E", str(WATCHDOG), str(os.getpid())], os.environ,
            file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0),
                          (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                          (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)],
            setsid=True,
        )  # fmt: skip
        os.close(read_end)
        if _watchdog is not None:
            os.close(_watchdog[1])
        _watchdog = (pid, write_end)
        for session in _spared:
            os.write(write_end, f"spare {session}\n".encode())
    return _watchdog[1]


def _exited(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return True


def _send(line: str) -> None:
    with _watchdog_lock:
        os.write(_watchdog_pipe(), line.encode())


def track(pid: int) -> None:
    """End ``pid`` (its process group and descendants too) when this process ends, however it ends."""
    _send(f"track {pid}\n")


def spare(session: int) -> None:
    """Let the session ``session`` outlive this process (``make controlplane`` runs in the background)."""
    with _watchdog_lock:
        _spared.add(session)
        if _watchdog is not None and not _exited(_watchdog[0]):
            os.write(_watchdog[1], f"spare {session}\n".encode())


def popen(
    args: list[str], *, stdout: IO[bytes] | int | None, stderr: IO[bytes] | int | None = subprocess.STDOUT,
    env: dict[str, str] | None = None, cwd: Path | str | None = None,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """Start a harness process that ends with this one: in a process group of its own, with the parent-death
    signal from the main thread, registered with the watchdog. Stop it with ``terminate`` (the whole group)."""
    with _watchdog_lock:
        _watchdog_pipe()  # the watchdog runs before the child exists
    process = subprocess.Popen(
        args, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, env=env, cwd=cwd, start_new_session=True,
        preexec_fn=_parent_death_signal(),
    )  # fmt: skip
    track(process.pid)
    return process


def spawn(args: list[str], log_path: Path, *, attached: bool, env: dict[str, str] | None = None) -> int:
    """Start ``args`` in its own session, logging to ``log_path``; return its PID.

    ``attached`` processes end with this process; detached ones (``make controlplane``) outlive it.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        if attached:
            process = popen(args, stdout=log, env=env)
        else:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env)  # fmt: skip
            spare(process.pid)
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
    """SIGTERM a child (its process group when it leads one, as ``popen``'s do), then SIGKILL after ``grace``."""
    if process.poll() is not None:
        return
    _signal(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        _signal(process.pid, signal.SIGKILL)
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


def _signal(pid: int, sig: signal.Signals) -> None:
    """Signal the process group ``pid`` leads, or the process alone when it leads none."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    _signal(pid, sig)
    _reap(pid)
