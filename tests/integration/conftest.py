"""Fixtures shared by the integration tests of this directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.controlplane import ControlPlane
from e2e.operator import RunningOperator, run_operator


@pytest.fixture(scope="module")
def operator(
    control_plane: ControlPlane, crds: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningOperator]:
    """The operator as users run it, for one test module (modules that need other flags define their own)."""
    with run_operator(control_plane, tmp_path_factory.mktemp("operator")) as running:
        yield running
