"""Benchmark: real Falco's side of a change — from an atomic swap of its rules directory to its sha256 metric
showing the new hashes, for 1 and for 20 rules files changed at once.

The directory is written as the agent writes it (a ``..data`` swap, ``e2e/configmap_volume.py``); Falco runs in
``nodriver`` mode (``e2e/falco.py``). Run: ``.venv/bin/python -m bench.falco_reload [--rounds 10]``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import tempfile
import time
from pathlib import Path

import anyio

from e2e.configmap_volume import ConfigMapVolume
from e2e.falco import find_falco, run_falco


def rules(name: str, round_: int) -> bytes:
    return (f"- rule: {name}\n  desc: d\n  condition: evt.type = open and proc.name = nope{round_}\n"
            f"  output: o\n  priority: INFO\n").encode()  # fmt: skip


async def measure(files: int, rounds: int, workdir: Path) -> list[float]:
    rules_dir = ConfigMapVolume(workdir / "rules.d")
    config_dir, plugins_dir = workdir / "config.d", workdir / "plugins"
    initial = {f"{index:02d}-r.yaml": rules(f"r{index}", 0) for index in range(files)}
    rules_dir.write(initial)
    times = []
    with run_falco(workdir / "falco", rules_dir.path, config_dir, plugins_dir, binaries=find_falco()) as falco:
        await falco.wait_rules({name: hashlib.sha256(data).hexdigest() for name, data in initial.items()})
        for round_ in range(1, rounds + 1):
            await anyio.sleep(1.5)  # Falco settles after its previous restart
            changed = {f"{index:02d}-r.yaml": rules(f"r{index}", round_) for index in range(files)}
            expected = {name: hashlib.sha256(data).hexdigest() for name, data in changed.items()}
            started = time.monotonic()
            rules_dir.write(changed)
            await falco.wait_rules(expected, timeout=30)
            times.append(time.monotonic() - started)
    return times


async def main(rounds: int) -> None:
    print(f"machine: {os.cpu_count()} cores; Falco {find_falco().source}; {rounds} swaps each")
    for files in (1, 20):
        with tempfile.TemporaryDirectory() as workdir:
            times = await measure(files, rounds, Path(workdir))
        print(f"swap of {files:2d} rules file(s) -> Falco's sha256 metric shows them: "
              f"p50 {statistics.median(times):.2f} s, max {max(times):.2f} s")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    anyio.run(main, parser.parse_args().rounds)
