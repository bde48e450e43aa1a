"""Controllers share one informer per resource and selection; each still gets the resync it asked for."""

from __future__ import annotations

from typing import Any, cast

import pytest

from falco_operator.kube import Client
from falco_operator.kube.manager import Manager, ManagerOptions
from falco_operator.kube.metrics import RuntimeMetrics
from falco_operator.resources import COMPONENTS, FALCOS

pytestmark = pytest.mark.anyio  # informers make their events on the loop


def manager() -> Manager:
    # Setting up informers talks to nobody: the client is only used once the manager runs.
    return Manager(cast(Client, cast(Any, object())), ManagerOptions(), RuntimeMetrics())


async def test_a_shared_informer_resyncs_as_often_as_its_most_demanding_user() -> None:
    shared = manager()
    first = shared.informer(COMPONENTS)  # the Falco controller's wiring: no resync of its own
    second = shared.informer(COMPONENTS, resync_period=5.0)  # the Component controller's
    assert second is first
    assert first.resync_period == 5.0
    assert shared.informer(COMPONENTS, resync_period=600.0).resync_period == 5.0
    assert shared.informer(COMPONENTS).resync_period == 5.0


async def test_informers_of_different_resources_keep_their_own_resync() -> None:
    shared = manager()
    assert shared.informer(FALCOS, resync_period=600.0).resync_period == 600.0
    assert shared.informer(COMPONENTS).resync_period is None
