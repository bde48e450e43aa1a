"""Pure parts of OCI pulling: credentials from Secrets, challenges, archives, durations (the digest cache:
test_oci_cache.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from artifact_agent.pulls import PullSettings, pull_request
from e2e.oci_artifacts import gzip_bomb, hostile_layer, tar_gz
from falco_operator.api import Falco
from falco_operator.api.ocirefs import parse_duration
from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts.oci import (
    PLUGIN,
    RULES,
    ArchiveRefused,
    Credentials,
    CredentialsProblem,
    credentials_from_secret,
    grantable,
    single_file,
)
from falco_operator.artifacts.oci.registry import parse_challenge
from falco_operator.instance.options import BuildOptions
from falco_operator.instance.podtemplate import agent_container


def _secret(
    data: dict[str, str], type_: str = "Opaque", labels: dict[str, str] | None = None, hosts: str | None = None
) -> dict[str, object]:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    annotations = {"artifact.falcosecurity.dev/registry-hosts": hosts} if hosts is not None else {}
    return {"metadata": {"name": "s", "labels": labels or {}, "annotations": annotations}, "type": type_,
            "data": encoded}  # fmt: skip


def _docker(auths: dict[str, dict[str, str]]) -> dict[str, object]:
    return _secret({".dockerconfigjson": json.dumps({"auths": auths})}, "kubernetes.io/dockerconfigjson")


def test_only_registry_secrets_are_grantable() -> None:
    assert grantable(_secret({}, "kubernetes.io/dockerconfigjson"))
    assert grantable(_secret({}, "kubernetes.io/basic-auth"))
    assert grantable(_secret({}, labels={"artifact.falcosecurity.dev/pull-secret": "true"}))
    assert not grantable(_secret({}))
    assert not grantable(_secret({}, labels={"artifact.falcosecurity.dev/pull-secret": "yes"}))
    assert not grantable(_secret({}, "kubernetes.io/service-account-token"))


def test_username_and_password_keys_default_and_custom() -> None:
    plain = _secret({"username": "u", "password": "p"}, hosts="r.io")
    assert credentials_from_secret(plain, "r.io") == Credentials("u", "p")
    custom = _secret({"user": "u", "token": "t"}, hosts="r.io")
    assert credentials_from_secret(custom, "r.io", "user", "token") == Credentials("u", "t")
    with pytest.raises(CredentialsProblem, match=r"has no key 'username' \(its keys: token, user\)"):
        credentials_from_secret(custom, "r.io")


@pytest.mark.parametrize("type_", ["kubernetes.io/basic-auth", "Opaque"])
def test_a_username_password_secret_that_names_no_registry_goes_nowhere(type_: str) -> None:
    secret = _secret({"username": "u", "password": "p"}, type_, {"artifact.falcosecurity.dev/pull-secret": "true"})
    with pytest.raises(CredentialsProblem) as caught:
        credentials_from_secret(secret, "evil.example")
    assert caught.value.reason == "SecretNotForRegistry"
    assert str(caught.value) == (
        "Secret s does not say which registries may receive its credentials: annotate it with "
        "artifact.falcosecurity.dev/registry-hosts=evil.example (comma-separated registry hosts)"
    )


def test_a_username_password_secret_goes_only_to_the_registries_it_names() -> None:
    secret = _secret({"username": "u", "password": "p"}, "kubernetes.io/basic-auth",
                     hosts="ghcr.io, https://Registry.Example:5000/v1/,index.docker.io")  # fmt: skip
    for host in ("ghcr.io", "registry.example:5000", "docker.io", "registry-1.docker.io"):
        assert credentials_from_secret(secret, host) == Credentials("u", "p"), host
    for host in ("evil.example", "registry.example", "registry.example:5001", "ghcr.io.evil.example"):
        with pytest.raises(CredentialsProblem, match="its credentials are never sent to another registry") as caught:
            credentials_from_secret(secret, host)
        assert caught.value.reason == "SecretNotForRegistry"


@pytest.mark.parametrize(
    "key", ["registry.example:5000", "https://registry.example:5000/v1/", "http://REGISTRY.example:5000"]
)
def test_docker_config_matches_hosts_as_docker_does(key: str) -> None:
    auth = base64.b64encode(b"user:pa:ss").decode()
    assert credentials_from_secret(_docker({key: {"auth": auth}}), "registry.example:5000") == Credentials(
        "user", "pa:ss"
    )


def test_docker_config_hub_aliases_and_username_fields() -> None:
    secret = _docker({"https://index.docker.io/v1/": {"username": "u", "password": "p"}})
    assert credentials_from_secret(secret, "registry-1.docker.io") == Credentials("u", "p")


def test_docker_config_never_gives_another_hosts_credentials() -> None:
    secret = _docker({"ghcr.io": {"username": "u", "password": "p"}})
    with pytest.raises(CredentialsProblem, match=r"no credentials for evil\.example \(it lists: ghcr\.io\)") as caught:
        credentials_from_secret(secret, "evil.example")
    assert caught.value.reason == "SecretNotForRegistry"
    with pytest.raises(CredentialsProblem, match="not base64"):
        credentials_from_secret(_docker({"ghcr.io": {"auth": "%%%"}}), "ghcr.io")


def test_credentials_never_print_the_password() -> None:
    assert "secret-value" not in repr(Credentials("u", "secret-value"))


def test_challenges_are_parsed() -> None:
    assert parse_challenge('Basic realm="falco-e2e"') == ("basic", {"realm": "falco-e2e"})
    scheme, params = parse_challenge(
        'Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull,push"'
    )
    assert scheme == "bearer"
    assert params == {"realm": "https://ghcr.io/token", "service": "ghcr.io", "scope": "repository:a/b:pull,push"}


def test_single_file_takes_the_one_payload_and_ignores_other_files() -> None:
    layer = tar_gz({"README.md": b"hi", "rules/falco_rules.yaml": b"- list: a\n  items: []\n"})
    taken = single_file(layer, (".yaml", ".yml"), 1 << 20)
    assert (taken.name, taken.data) == ("falco_rules.yaml", b"- list: a\n  items: []\n")


@pytest.mark.parametrize(
    ("hostility", "message"),
    [("symlink", "links are refused"), ("hardlink", "links are refused"), ("parent", "leaves its directory"),
     ("absolute", "absolute path"), ("device", "not a regular file"), ("two-files", "exactly one"),
     ("not-gzip", "not a readable tar.gz")],
)  # fmt: skip
def test_hostile_archives_are_refused(hostility: str, message: str) -> None:
    with pytest.raises(ArchiveRefused, match=message):
        single_file(hostile_layer(hostility), (".yaml",), 1 << 20)  # type: ignore[arg-type]


def test_an_archive_that_expands_past_the_cap_is_refused() -> None:
    bomb = gzip_bomb(4 << 20)
    assert len(bomb) < 64 * 1024
    with pytest.raises(ArchiveRefused, match="expands to more than the 1048576-byte limit"):
        single_file(bomb, (".yaml",), 1 << 20)


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90s", "1h30m", "1.5h", "250ms")] == [90, 5400, 5400, 0.25]
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration("1 hour")


def _oci_rulesfile(oci: dict[str, object]) -> Rulesfile:
    return Rulesfile.from_wire({"metadata": {"name": "r", "generation": 1}, "spec": {"ociArtifact": oci}})


@pytest.mark.parametrize(("interval", "seconds"), [("0s", 60), ("1ns", 60), ("1s", 60), ("59s", 60), ("1m", 60),
                                                   ("90s", 90), ("1h", 3600)])  # fmt: skip
def test_a_refresh_interval_stored_before_the_crd_floor_is_held_to_a_minute(interval: str, seconds: float) -> None:
    request = pull_request(_oci_rulesfile({"reference": "ghcr.io/a/b:1", "refreshInterval": interval}))
    assert request is not None
    assert request.refresh == seconds


def test_a_digest_reference_is_never_refreshed() -> None:
    request = pull_request(_oci_rulesfile({"reference": "ghcr.io/a/b@sha256:" + "a" * 64, "refreshInterval": "1h"}))
    assert request is not None
    assert request.refresh is None


def _mebibytes(quantity: str) -> int:
    assert quantity.endswith("Mi"), quantity
    return int(quantity.removesuffix("Mi")) << 20


def test_default_size_caps_stay_well_under_the_agent_containers_memory_limit() -> None:
    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "ns"}, "spec": {}})
    limit = _mebibytes(agent_container(falco, BuildOptions())["resources"]["limits"]["memory"])
    settings = PullSettings(cache_dir=Path("/unused"))
    assert settings.max_bytes(RULES) == 4 << 20, "the rules parser refuses more than 4 MiB anyway"
    assert settings.max_bytes(PLUGIN) == 64 << 20
    # The file taken out is held in memory (and handed to the planner and the materializer): room for a few
    # copies besides the agent's own ~60 MiB.
    assert 3 * settings.max_bytes(PLUGIN) + (60 << 20) <= limit
