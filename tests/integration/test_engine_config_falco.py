"""The engine section and ``engine.kind: auto`` with real Falco: the ``falco.yaml`` the operator renders, with its
``/etc/falco`` paths moved into a scratch directory, is the configuration Falco starts from.

The Falco of these tests is a userspace build: it opens ``nodriver`` and says which kernel engine it would open (and
with which buffers) before it stops, for want of the driver, which is enough to see what it was configured to do.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from e2e.controlplane.cluster import free_port
from e2e.controlplane.processes import popen, terminate
from e2e.falco import find_falco
from falco_operator.api import Falco
from falco_operator.instance.workload import falco_yaml

Json = dict[str, Any]
START_DEADLINE = 30.0


def rendered_config(spec: Json, root: Path) -> Path:
    """The operator's falco.yaml for ``spec``, its /etc/falco paths under ``root``, its web server on loopback."""
    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "ns"}, "spec": spec})
    text = (
        falco_yaml(falco).replace("/etc/falco/", f"{root}/").replace("listen_port: 8765", f"listen_port: {free_port()}")
    )
    for directory in ("rules.d", "config.d", "driver"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    path = root / "falco.yaml"
    path.write_text(text + "\n")
    return path


@pytest.fixture
def falco_binary() -> Path:
    return find_falco().falco


@contextmanager
def running(binary: Path, config: Path) -> Iterator[Path]:
    """Falco on ``config`` until the block ends; its log (stdout and stderr)."""
    log = config.parent / "falco.log"
    with log.open("wb") as output:
        process = popen([str(binary), "-c", str(config)], stdout=output)
    try:
        yield log
    finally:
        terminate(process)


def output_until(log: Path, wanted: tuple[str, ...]) -> tuple[str, str]:
    """The log once a line holds one of ``wanted`` (or at the deadline); that line."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        text = log.read_text(errors="replace")
        line = next((line for line in text.splitlines() if any(w in line for w in wanted)), "")
        if line or time.monotonic() > deadline:
            return text, line
        time.sleep(0.05)


OPENING = ("Opening 'syscall' source with", "Error:")


def test_auto_starts_as_modern_ebpf_when_the_loader_has_written_nothing(tmp_path: Path, falco_binary: Path) -> None:
    config = rendered_config({"engine": {"kind": "auto"}}, tmp_path)
    with running(falco_binary, config) as log:
        output, _ = output_until(log, OPENING)
        assert "Opening 'syscall' source with modern BPF probe" in output, output


@pytest.mark.parametrize(("chosen", "opened"), [("nodriver", "with no driver"), ("kmod", "with Kernel module")])
def test_auto_opens_the_driver_the_loader_wrote_into_its_fragment(
    tmp_path: Path, falco_binary: Path, chosen: str, opened: str
) -> None:
    config = rendered_config({"engine": {"kind": "auto"}}, tmp_path)
    # What falcoctl's `driver config` writes (engine-kind-falcoctl.yaml, `engine: {kind: <driver>}`).
    (tmp_path / "driver" / "engine-kind-falcoctl.yaml").write_text(f"engine:\n  kind: {chosen}\n")
    with running(falco_binary, config) as log:
        output, line = output_until(log, ("Opening 'syscall' source with",))
        assert opened in line, output
        assert "driver/engine-kind-falcoctl.yaml | schema validation: ok" in output, output


def test_typed_modern_ebpf_options_are_the_buffers_falco_opens(tmp_path: Path, falco_binary: Path) -> None:
    spec = {"engine": {"kind": "modern_ebpf", "bufSizePreset": 3, "cpusForEachBuffer": 1, "dropFailedExit": True}}
    config = rendered_config(spec, tmp_path)
    with running(falco_binary, config) as log:
        output, _ = output_until(log, ("Error:",))
        assert "falco.yaml | schema validation: ok" in output, output
        # Preset 3 is 4 MiB per buffer (preset 4, Falco's default, is 8 MiB).
        assert "The chosen syscall buffer dimension is: 4194304 bytes (4 MBs)" in output, output
        assert "One ring buffer every '1' CPUs." in output, output


def test_falco_refuses_the_legacy_ebpf_engine_the_api_no_longer_offers(tmp_path: Path, falco_binary: Path) -> None:
    config = rendered_config({"engine": {"kind": "kmod"}}, tmp_path)
    config.write_text(config.read_text().replace("kind: kmod", "kind: ebpf"))
    result = subprocess.run([str(falco_binary), "-c", str(config), "--dry-run"], capture_output=True, text=True,
                            timeout=START_DEADLINE, check=False)  # fmt: skip
    assert result.returncode != 0
    assert "engine.kind 'ebpf' is not a valid kind" in result.stdout + result.stderr
