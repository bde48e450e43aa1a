"""Which CA trusts which registry host, and which hosts serve a reference: the Falco's ``spec.registries`` as the
agent receives it (flags, which ``falco_operator.instance.registries`` writes).

A reference written for ``registry.corp/team/rules:1`` is asked of each mirror of ``registry.corp`` in order (same
repository and tag or digest), then of ``registry.corp`` itself unless the entry is mirrors-only. The artifact's
credentials are for its own host: a mirror gets them only when the entry says so. The artifact's ``plainHTTP`` and
``insecureSkipVerify`` are for its own host too: mirrors are reached over verified TLS.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import field, replace

from ...api.ocirefs import OCILocation
from ...records import record

CA_FLAG = "--registry-host-ca"
MIRROR_FLAG = "--registry-mirror"
MIRRORS_ONLY_FLAG = "--registry-mirrors-only"
CREDENTIALS_TO_MIRRORS_FLAG = "--registry-credentials-to-mirrors"


@record(frozen=True)
class HostSettings:
    ca_file: str | None = None
    """A PEM file trusted for this host only."""
    mirrors: tuple[str, ...] = ()
    """Hosts asked first, in order."""
    mirrors_only: bool = False
    """Never ask the host itself."""
    credentials_to_mirrors: bool = False
    """The artifact's credentials for the host go to its mirrors too."""


@record(frozen=True)
class Endpoint:
    """One host to ask for a reference: its location there, and whether the artifact's credentials go along."""

    location: OCILocation
    mirror_of: str | None = None
    """The host the reference names, when this is one of its mirrors."""
    send_credentials: bool = True


@record(frozen=True)
class RegistryHosts:
    hosts: Mapping[str, HostSettings] = field(default_factory=dict)
    """By host, lowercase."""

    def ca_file(self, host: str) -> str | None:
        settings = self.hosts.get(host.lower())
        return settings.ca_file if settings else None

    def endpoints(self, location: OCILocation) -> list[Endpoint]:
        """Where to ask for ``location``, in order; the reference's own host alone when it has no mirrors."""
        settings = self.hosts.get(location.registry.lower()) or HostSettings()
        mirrored = [
            Endpoint(
                replace(location, registry=mirror, plain_http=False, insecure_skip_verify=False),
                mirror_of=location.registry,
                send_credentials=settings.credentials_to_mirrors,
            )
            for mirror in settings.mirrors
        ]
        if settings.mirrors_only and mirrored:
            return mirrored
        return [*mirrored, Endpoint(location)]

    @classmethod
    def parse(
        cls,
        ca: Iterable[str] = (),
        mirrors: Iterable[str] = (),
        mirrors_only: Iterable[str] = (),
        credentials_to_mirrors: Iterable[str] = (),
    ) -> RegistryHosts:
        """From the agent's flags: ``HOST=FILE`` for CAs, ``HOST=MIRROR`` for mirrors (repeated, in order), ``HOST``
        for the two switches. Raises ``ValueError`` with what is wrong."""
        ca_files: dict[str, str] = {}
        for value in ca:
            host, path = _pair(value, CA_FLAG, "FILE")
            if host in ca_files:
                raise ValueError(f"{CA_FLAG}: {host} has two CA files")
            ca_files[host] = path
        mirror_lists: dict[str, list[str]] = {}
        for value in mirrors:
            host, mirror = _pair(value, MIRROR_FLAG, "MIRROR")
            mirror = mirror.lower()
            listed = mirror_lists.setdefault(host, [])
            if mirror == host:
                raise ValueError(f"{MIRROR_FLAG}: {host} cannot be its own mirror")
            if mirror in listed:
                raise ValueError(f"{MIRROR_FLAG}: {mirror} is listed twice as a mirror of {host}")
            listed.append(mirror)
        only = {_host(value, MIRRORS_ONLY_FLAG) for value in mirrors_only}
        credentials = {_host(value, CREDENTIALS_TO_MIRRORS_FLAG) for value in credentials_to_mirrors}
        for host in (only | credentials) - set(mirror_lists):
            raise ValueError(f"{host} has no {MIRROR_FLAG}, so {MIRRORS_ONLY_FLAG} or "
                             f"{CREDENTIALS_TO_MIRRORS_FLAG} means nothing for it")  # fmt: skip
        hosts = {
            host: HostSettings(
                ca_file=ca_files.get(host),
                mirrors=tuple(mirror_lists.get(host, ())),
                mirrors_only=host in only,
                credentials_to_mirrors=host in credentials,
            )
            for host in set(ca_files) | set(mirror_lists)
        }
        return cls(hosts)


def _pair(value: str, flag: str, what: str) -> tuple[str, str]:
    host, equals, rest = value.partition("=")
    if not equals or not host or not rest:
        raise ValueError(f"{flag} takes HOST={what}, not {value!r}")
    return _host(host, flag), rest


def _host(value: str, flag: str) -> str:
    host = value.strip().lower()
    if not host or "/" in host or "=" in host:
        raise ValueError(f"{flag}: {value!r} is not a registry host")
    return host
