"""``make demo``'s scenario on the session's control plane: every seed example as the seed README says, the
summary, and an edit of a Rulesfile reaching all three nodes' real Falco while the live view prints it."""

from __future__ import annotations

import io
import json
from pathlib import Path

import anyio
import kr8s.asyncio
import pytest

from e2e.controlplane import ControlPlane
from e2e.demo import NAMESPACE, NODES, Demo
from e2e.wait import wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("crds")]
EDITED = (
    "- rule: edited_in_the_demo\n  desc: d\n  condition: evt.type = open and proc.name = nope\n  output: o\n"
    "  priority: INFO\n"
)


async def test_the_demo_meets_every_seed_example_and_shows_an_edit_arrive(
    api: kr8s.asyncio.Api, control_plane: ControlPlane, tmp_path: Path
) -> None:
    out = io.StringIO()
    demo = Demo(control_plane, tmp_path, out)
    try:
        await anyio.to_thread.run_sync(demo.start)
        await demo.seeds(api)
        failed = [(seed, what) for seed, ok, what in demo.outcomes if not ok]
        assert failed == [], out.getvalue()
        assert sorted({seed for seed, _, _ in demo.outcomes}) == [f"0{n}" for n in range(1, 10)]
        summary = await demo.summary(api)
        assert f"Seed examples: {len(demo.outcomes)}/{len(demo.outcomes)} as expected" in summary
        for node in NODES:
            assert f"{node}  rules.d/50-03-falco-rules-inline.yaml" in summary

        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(demo.watch, stop)
            await anyio.sleep(0.6)  # the watch has taken its first look
            edit = {"spec": {"ociArtifact": {"inline": EDITED}}}
            control_plane.kubectl("patch", "rulesfile", "falco-rules", "-n", NAMESPACE, "--type=merge", "-p",
                                  json.dumps(edit))  # fmt: skip

            async def arrived() -> list[str]:
                return [line for line in out.getvalue().splitlines()
                        if "rules.d/50-03-falco-rules-inline.yaml" in line and line.endswith("loaded")]  # fmt: skip

            lines = await wait_for(arrived, lambda found: {line.split()[0] for line in found} == set(NODES),
                                   what="the edit loaded by Falco on every node", timeout=30)  # fmt: skip
            stop.set()
        assert len(lines) == 3, out.getvalue()
    finally:
        demo.stop()
        for kind in ("falcorules", "rulesfiles", "plugins", "configs", "falcos"):
            control_plane.kubectl("delete", kind, "--all", "-n", NAMESPACE, "--wait=false", check=False)
        control_plane.kubectl("delete", "namespace", "falco-deployment", "--wait=false", check=False)
