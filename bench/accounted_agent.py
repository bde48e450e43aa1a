"""The agent's command with its CPU time accounted per task and per worker-thread call (``bench.agent_cpu
--account``), switched on and off by signals.

SIGUSR1 starts counting, SIGUSR2 stops and writes ``$AGENT_ACCOUNT`` (JSON: CPU seconds and steps by name). On the
event loop's thread each step of a task is charged to the coroutine the task runs (``Agent._watch_falco``,
``Informer.run``...) and each other callback to its function; what the loop's thread spends between them (waiting
in ``epoll``, timers, the selector's bookkeeping) is ``(event loop)``. A call sent to a worker thread
(``anyio.to_thread.run_sync``) is charged to the function it runs. Thread CPU time (``time.thread_time``), unlike
a profiler's wall time, leaves out waits; the counting itself costs a few microseconds a step.
"""

from __future__ import annotations

import asyncio.base_events
import asyncio.events
import functools
import json
import os
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio.to_thread

charged: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])
lock = threading.Lock()
active = False
started_main = 0.0
started_process = 0.0


def charge(name: str, seconds: float) -> None:
    with lock:
        entry = charged[name]
        entry[0] += seconds
        entry[1] += 1


def handle_name(handle: asyncio.events.Handle) -> str:
    callback: Any = handle._callback  # type: ignore[attr-defined]
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task {owner.get_name()}"  # anyio names a task after the function it runs
    callback = getattr(callback, "func", callback)
    return f"callback {getattr(callback, '__qualname__', type(callback).__name__)}"


def accounted_run(run: Callable[[asyncio.events.Handle], None]) -> Callable[[asyncio.events.Handle], None]:
    @functools.wraps(run)
    def wrapper(handle: asyncio.events.Handle) -> None:
        if not active:
            return run(handle)
        before = time.thread_time()
        try:
            return run(handle)
        finally:
            charge(handle_name(handle), time.thread_time() - before)

    return wrapper


def accounted(run_sync: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run_sync)
    async def wrapper(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not active:
            return await run_sync(func, *args, **kwargs)
        inner = getattr(func, "func", func)
        name = f"thread {getattr(inner, '__qualname__', type(inner).__name__)}"

        def counted() -> Any:
            before = time.thread_time()
            try:
                return func(*args)
            finally:
                charge(name, time.thread_time() - before)

        return await run_sync(counted, **kwargs)

    return wrapper


def start(_signal: int, _frame: FrameType | None) -> None:
    global active, started_main, started_process
    charged.clear()
    started_main, started_process = time.thread_time(), time.process_time()
    active = True


def stop(_signal: int, _frame: FrameType | None) -> None:
    global active
    active = False
    main_thread, process = time.thread_time() - started_main, time.process_time() - started_process
    with lock:
        result = {name: list(entry) for name, entry in charged.items()}
    on_loop = sum(seconds for name, (seconds, _) in result.items() if name.startswith(("task ", "callback ")))
    result["(event loop)"] = [main_thread - on_loop, 0]
    result["(process)"] = [process, 0]
    with open(os.environ["AGENT_ACCOUNT"], "w") as file:
        json.dump(result, file)


def charged_function(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with its own CPU charged to ``name`` too (it stays in its task's figure as well)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not active:
            return function(*args, **kwargs)
        before = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            charge(f"  of which {name}", time.thread_time() - before)

    return wrapper


def charge_functions() -> None:
    """Parts of the watch events' work, shown apart (``AGENT_ACCOUNT_PARTS=1``)."""
    import types

    from falco_operator.kube import informer

    informer.Informer._apply_event = charged_function("Informer._apply_event", informer.Informer._apply_event)  # type: ignore[method-assign]
    setattr(informer, "json", types.SimpleNamespace(loads=charged_function("json.loads (watch)", json.loads)))  # noqa: B010


def counted_iterations(run_once: Callable[[Any], None]) -> Callable[[Any], None]:
    @functools.wraps(run_once)
    def wrapper(loop: Any) -> None:
        if active:
            charge("(event loop iterations: count only)", 0.0)
        run_once(loop)

    return wrapper


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, start)
    asyncio.base_events.BaseEventLoop._run_once = counted_iterations(asyncio.base_events.BaseEventLoop._run_once)  # type: ignore[attr-defined]
    signal.signal(signal.SIGUSR2, stop)
    asyncio.events.Handle._run = accounted_run(asyncio.events.Handle._run)  # type: ignore[method-assign,assignment]
    anyio.to_thread.run_sync = accounted(anyio.to_thread.run_sync)  # type: ignore[assignment]
    if os.environ.get("AGENT_ACCOUNT_PARTS"):
        charge_functions()
    from artifact_agent.cli import main

    sys.exit(main(sys.argv[1:]))
