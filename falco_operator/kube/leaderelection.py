"""Leader election on a ``coordination.k8s.io/v1`` Lease, with optimistic concurrency on every write.

Expiry is judged by the local clock from when this candidate last saw the lease record change, not from the
holder's timestamps, so clock skew between nodes cannot make two leaders. The leader gives up once no renewal
succeeded for ``renew_deadline`` and a standby takes over only after ``lease_duration``, which must be longer.

One attempt (a GET and a PUT) is abandoned after ``attempt_timeout``: short enough that a request that hangs costs
one attempt, not the whole renew deadline, and a second attempt still fits before it (``RenewalClock``).
"""

from __future__ import annotations

import datetime
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any

import anyio

from .client import Client
from .errors import ApiError, Conflict, NotFound
from .metrics import RuntimeMetrics
from .resources import LEASES

Json = dict[str, Any]
log = logging.getLogger("falco_operator.kube.leaderelection")


class LeaderLost(Exception):
    """The lease could not be renewed within the renew deadline: stop acting at once."""


def unique_identity(base: str | None = None) -> str:
    """``base`` (the pod name, else the host name) plus a random suffix: two processes never share an identity,
    even a restarted container in the same pod, whose predecessor may still be named as the holder."""
    stem = base or os.environ.get("POD_NAME") or socket.gethostname()
    return f"{stem}_{secrets.token_hex(4)}"


def check_timings(lease_duration: float, renew_deadline: float, retry_period: float) -> None:
    """Refuse timings that would let a standby take over while the leader still believes it leads."""
    if not lease_duration > renew_deadline > retry_period > 0:
        raise ValueError(
            "leader election needs lease duration > renew deadline > retry period > 0, got "
            f"{lease_duration:g}s, {renew_deadline:g}s, {retry_period:g}s"
        )


def attempt_timeout(renew_deadline: float, retry_period: float) -> float:
    """How long one attempt may take: an attempt that starts a retry period after the last renewal may hang to
    this limit and a second one still has as long before the renew deadline (4 s of 10 s, retrying every 2 s)."""
    return (renew_deadline - retry_period) / 2


@dataclass
class RenewalClock:
    """When the leader tries to renew and for how long, in ``time.monotonic()`` seconds.

    Attempts start a retry period apart, or at once after one that hung until abandoned; each is cut to
    ``attempt_timeout`` and to what is left of the renew deadline, which runs from the last successful renewal.
    """

    renew_deadline: float
    retry_period: float
    last_renewal: float
    last_attempt: float
    last_budget: float = 0.0

    @classmethod
    def starting(cls, now: float, renew_deadline: float, retry_period: float) -> RenewalClock:
        return cls(renew_deadline, retry_period, last_renewal=now, last_attempt=now)

    def left(self, now: float) -> float:
        return self.renew_deadline - (now - self.last_renewal)

    def wait(self, now: float) -> float:
        """Seconds until the next attempt."""
        since_attempt = now - self.last_attempt
        if self.last_budget > 0 and since_attempt >= self.last_budget and self.last_renewal < self.last_attempt:
            return 0.0  # the last attempt hung and was abandoned: the time waited already
        return max(0.0, min(self.retry_period - since_attempt, self.left(now)))

    def start_attempt(self, now: float) -> float:
        """The budget of the attempt starting now; zero or less once the renew deadline has passed."""
        self.last_attempt = now
        self.last_budget = min(attempt_timeout(self.renew_deadline, self.retry_period), self.left(now))
        return self.last_budget

    def renewed(self, now: float) -> None:
        self.last_renewal = now

    def expired(self, now: float) -> bool:
        return self.left(now) <= 0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(
        self,
        client: Client,
        *,
        namespace: str,
        name: str,
        identity: str,
        metrics: RuntimeMetrics | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
    ) -> None:
        check_timings(lease_duration, renew_deadline, retry_period)
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.leading = False
        self._lease: Json | None = None
        self._observed_spec: Json | None = None
        self._observed_at = 0.0
        self._gauge = metrics.leader_status.labels(name) if metrics else None
        if self._gauge:
            self._gauge.set(0)

    async def acquire(self) -> None:
        """Return once this candidate holds the lease."""
        logged = False
        while not await self._attempt():
            if not logged:
                holder = (self._observed_spec or {}).get("holderIdentity")
                log.info("waiting for lease %s/%s held by %s", self.namespace, self.name, holder)
                logged = True
            await anyio.sleep(self.retry_period)
        self._set_leading(True)
        log.info("acquired lease %s/%s as %s", self.namespace, self.name, self.identity)

    async def _attempt(self, budget: float | None = None) -> bool:
        limit = attempt_timeout(self.renew_deadline, self.retry_period) if budget is None else budget
        try:
            with anyio.fail_after(limit):
                return await self._try_acquire_or_renew()
        except TimeoutError:
            log.warning("lease %s/%s: attempt abandoned after %.1fs", self.namespace, self.name, limit)
            return False
        except ApiError as error:
            log.warning("lease %s/%s: %s", self.namespace, self.name, error or type(error).__name__)
            return False

    async def keep_renewing(self) -> None:
        """Renew every retry period; raise ``LeaderLost`` once no renewal has succeeded for the renew deadline.

        The deadline runs from the last successful renewal and bounds each attempt too, so leadership is given up
        at most ``renew_deadline`` after the last renewal, before any standby may take over (``lease_duration``);
        an attempt that hangs is abandoned after ``attempt_timeout`` and the next starts at once.
        """
        clock = RenewalClock.starting(time.monotonic(), self.renew_deadline, self.retry_period)
        while True:
            await anyio.sleep(clock.wait(time.monotonic()))
            budget = clock.start_attempt(time.monotonic())
            if budget > 0 and await self._attempt(budget=budget):
                clock.renewed(time.monotonic())
            elif clock.expired(time.monotonic()) or not self._held_by_me():
                self._set_leading(False)
                since = time.monotonic() - clock.last_renewal
                raise LeaderLost(
                    f"lost the leader lease {self.namespace}/{self.name}: no renewal succeeded for {since:.1f}s "
                    f"(renew deadline {self.renew_deadline:g}s) or another candidate holds it"
                )

    async def release(self) -> None:
        """Give the lease up so another candidate takes over at once (on a clean shutdown)."""
        if not self.leading or self._lease is None:
            return
        lease = self._lease
        now = _now()
        spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": now, "acquireTime": now}
        try:
            with anyio.fail_after(self.retry_period * 2):
                await self.client.update(LEASES, {**lease, "spec": spec})
            log.info("released lease %s/%s", self.namespace, self.name)
        except (TimeoutError, ApiError) as error:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, error)
        self._set_leading(False)

    def _set_leading(self, leading: bool) -> None:
        self.leading = leading
        if self._gauge:
            self._gauge.set(1 if leading else 0)

    def _held_by_me(self) -> bool:
        """As last observed (read or written): a newer holder seen on a renewal attempt means leadership is gone."""
        return bool(self._observed_spec and self._observed_spec.get("holderIdentity") == self.identity)

    def _observe(self, lease: Json) -> None:
        spec = lease.get("spec") or {}
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = time.monotonic()

    async def _try_acquire_or_renew(self) -> bool:
        now = _now()
        try:
            lease = await self.client.get(LEASES, self.name, self.namespace)
        except NotFound:
            spec: Json = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_duration),
                    "acquireTime": now, "renewTime": now, "leaseTransitions": 0}  # fmt: skip
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}  # fmt: skip
            try:
                self._lease = await self.client.create(LEASES, body, self.namespace)
            except Conflict:
                return False
            self._observe(self._lease)
            return True
        self._observe(lease)
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return False
        taking_over = holder != self.identity
        new_spec: Json = {
            **spec,
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.lease_duration),
            "renewTime": now,
        }
        if taking_over:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        try:
            self._lease = await self.client.update(LEASES, {**lease, "spec": new_spec})
        except Conflict:
            return False
        self._observe(self._lease)
        return True
