"""Which addresses the agent may reach for registries and token services, and the flag that widens it."""

from __future__ import annotations

import ipaddress
from typing import Any

import httpcore
import pytest

from artifact_agent.cli import build_parser as agent_parser
from falco_operator.api import Falco
from falco_operator.artifacts.oci.addresses import AddressRefused, GuardedBackend, check_addresses, refusal
from falco_operator.cli import build_parser as operator_parser
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import agent_container


@pytest.mark.parametrize(
    ("address", "why"),
    [("127.0.0.1", "loopback"), ("127.8.8.8", "loopback"), ("::1", "loopback"),
     ("169.254.169.254", "link-local address (such as the cloud metadata service)"), ("fe80::1", "link-local"),
     ("10.96.0.1", "private"), ("172.16.5.4", "private"), ("192.168.1.1", "private"), ("fd00::1", "private"),
     ("100.64.0.10", "non-public"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
     ("224.0.0.251", "multicast"), ("ff02::1", "multicast"), ("255.255.255.255", "private"),
     ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"),
     ("2002:7f00:1::", "loopback"), ("::a9fe:a9fe", "link-local"), ("::7f00:1", "loopback"),
     ("64:ff9b:1::a9fe:a9fe", "local-use NAT64"), ("64:ff9b:1::1.1.1.1", "local-use NAT64")],
)  # fmt: skip
def test_cluster_internal_and_special_addresses_are_refused(address: str, why: str) -> None:
    assert why in (refusal(ipaddress.ip_address(address)) or "public")


@pytest.mark.parametrize("address", ["140.82.112.34", "8.8.8.8", "2606:4700::6810:84e5", "2a00:1450:4001::200e"])
def test_public_addresses_are_reachable(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_every_address_a_name_resolves_to_is_checked() -> None:
    assert check_addresses("ghcr.io", ["140.82.112.34", "2606:50c0:8000::154"]) == ["140.82.112.34",
                                                                                  "2606:50c0:8000::154"]  # fmt: skip
    with pytest.raises(AddressRefused) as caught:
        check_addresses("rebind.example", ["140.82.112.34", "169.254.169.254"])
    assert caught.value.message == (
        "rebind.example (169.254.169.254) is a link-local address (such as the cloud metadata service); the agent "
        "reaches registries and token services only at public addresses unless it runs with "
        "--allow-private-registries"
    )
    with pytest.raises(AddressRefused, match="resolves to no address"):
        check_addresses("nothing.example", [])


@pytest.mark.anyio
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "169.254.169.254"])
async def test_the_connection_layer_refuses_before_connecting(host: str) -> None:
    with pytest.raises(AddressRefused, match="only at public addresses"):
        await GuardedBackend().connect_tcp(host, 9)


@pytest.mark.anyio
async def test_the_connection_layer_connects_anywhere_when_allowed() -> None:
    with pytest.raises(httpcore.ConnectError):  # nothing listens on the discard port: the attempt was made
        await GuardedBackend(allow_private=True).connect_tcp("127.0.0.1", 9, timeout=2)


def _falco() -> Falco:
    document: dict[str, Any] = {"metadata": {"name": "f", "namespace": "ns"}, "spec": {}}
    return Falco.model_validate(document)


def test_the_operator_passes_the_flag_to_the_agents_it_builds() -> None:
    assert "args" not in agent_container(_falco(), BuildOptions())
    allowed = agent_container(_falco(), BuildOptions(allow_private_registries=True))
    assert allowed["args"] == ["--allow-private-registries"]
    assert agent_parser().parse_args(allowed["args"]).allow_private_registries is True
    assert agent_parser().parse_args([]).allow_private_registries is False
    assert operator_parser().parse_args(["run", "--allow-private-registries"]).allow_private_registries is True
    assert operator_parser().parse_args(["run"]).allow_private_registries is False
