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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The install module uninstalls the CRDs every other module uses: it runs last (a stable sort keeps the rest
    in order)."""
    items.sort(key=lambda item: item.nodeid.startswith("tests/integration/test_install.py"))
