"""The agent's command under cProfile, switched on and off by signals (``bench.agent_cpu --profile``).

SIGUSR1 starts profiling, SIGUSR2 stops it and writes ``$AGENT_PROFILE`` (pstats). Work the agent sends to worker
threads (``anyio.to_thread.run_sync``: the swap, the rules checks) is profiled per call and added in, so the
profile covers the whole pass, not only the event loop's thread. Start-up (imports, the first pass) stays out.
"""

from __future__ import annotations

import cProfile
import functools
import os
import pstats
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import anyio.to_thread

main_profile = cProfile.Profile()
thread_profiles: list[cProfile.Profile] = []
lock = threading.Lock()
active = False


def start(_signal: int, _frame: FrameType | None) -> None:
    global active
    active = True
    main_profile.enable()


def stop(_signal: int, _frame: FrameType | None) -> None:
    global active
    active = False
    main_profile.disable()
    stats = pstats.Stats(main_profile)
    with lock:
        for profile in thread_profiles:
            stats.add(profile)
    stats.dump_stats(os.environ["AGENT_PROFILE"])


def profiled(run_sync: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run_sync)
    async def wrapper(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not active:
            return await run_sync(func, *args, **kwargs)
        profile = cProfile.Profile()
        with lock:
            thread_profiles.append(profile)
        return await run_sync(functools.partial(profile.runcall, func), *args, **kwargs)

    return wrapper


if __name__ == "__main__":
    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    anyio.to_thread.run_sync = profiled(anyio.to_thread.run_sync)  # type: ignore[assignment]
    from artifact_agent.cli import main

    sys.exit(main(sys.argv[1:]))
