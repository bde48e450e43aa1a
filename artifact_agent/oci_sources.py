"""The agent's OCI sources: nothing to import or run until an artifact has one.

``OCISources`` answers for the pulls the agent's pass asks (``want``, ``resolve``, ``settled``...) with the interface
of ``pulls.OCIPulls``. Until the first artifact with an OCI source is wanted (``pull_settings.oci_source``, as
``pulls.pull_request`` decides) there is nothing pulled: every answer is empty and the sources are settled, and the
pull machinery (``pulls.py``, the digest cache, credentials, signature checks) is not imported; the agent of a
cluster without OCI artifacts never imports it. The first such ``want`` imports it, builds the ``OCIPulls`` in the
task group ``run`` holds (``OCIPulls.attach``) and forwards everything to it from then on, also once no artifact has
an OCI source any more (the pulls stop and prune the cache as they always did). Until then the cache is not
touched: ``OCIPulls.want`` without OCI artifacts did nothing either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from falco_operator.artifacts import Artifact, ArtifactKey, Resolution, Unavailable
from falco_operator.artifacts.needs import ArtifactNeeds
from falco_operator.kube import Client

from .metrics import AgentMetrics
from .pull_settings import PullSettings, oci_source

if TYPE_CHECKING:
    from .pulls import OCIPulls


class OCISources:
    def __init__(
        self,
        client: Client,
        namespace: str,
        settings: PullSettings,
        metrics: AgentMetrics,
        on_change: Callable[[], None],
        *,
        instance: str | None = None,
    ) -> None:
        self._client = client
        self._namespace = namespace
        self._settings = settings
        self._metrics = metrics
        self._on_change = on_change
        self._instance = instance
        self._group: anyio.abc.TaskGroup | None = None
        self.pulls: OCIPulls | None = None
        """The pulls, once an artifact with an OCI source was wanted."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._group = group
                task_status.started()
                await anyio.sleep_forever()
        finally:
            if self.pulls is not None:
                with anyio.CancelScope(shield=True):
                    await self.pulls.close()

    def want(self, artifacts: Iterable[Artifact], *, policy_generation: int | None = None) -> None:
        """As ``OCIPulls.want``; the first artifact with an OCI source starts the pulls."""
        if self.pulls is None:
            artifacts = list(artifacts)
            if not any(oci_source(artifact) is not None for artifact in artifacts):
                return
            self.pulls = self._start()
        self.pulls.want(artifacts, policy_generation=policy_generation)

    def _start(self) -> OCIPulls:
        assert self._group is not None, "run() first"
        from .pulls import OCIPulls

        pulls = OCIPulls(self._client, self._namespace, self._settings, self._metrics, self._on_change,
                         instance=self._instance)  # fmt: skip
        pulls.attach(self._group)
        return pulls

    def resolve(self, key: ArtifactKey) -> Resolution | None:
        return self.pulls.resolve(key) if self.pulls is not None else None

    def refresh_problems(self) -> dict[ArtifactKey, Unavailable]:
        return self.pulls.refresh_problems() if self.pulls is not None else {}

    def artifact_needs(self) -> dict[str, ArtifactNeeds]:
        return self.pulls.artifact_needs() if self.pulls is not None else {}

    def plugin_versions(self) -> dict[str, str]:
        return self.pulls.plugin_versions() if self.pulls is not None else {}

    def signers(self) -> dict[ArtifactKey, tuple[str, str]]:
        return self.pulls.signers() if self.pulls is not None else {}

    def settled(self) -> bool:
        return self.pulls.settled() if self.pulls is not None else True

    async def wait_settled(self) -> None:
        if self.pulls is not None:
            await self.pulls.wait_settled()
