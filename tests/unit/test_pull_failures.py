"""Pull failures (pure): which reasons withdraw what a source resolved to before, and what planning then does with
the artifact's files."""

from __future__ import annotations

import httpx
import pytest

from falco_operator.api.plain import Rulesfile
from falco_operator.artifacts import RULES_DIR, ArtifactKey, Content, Delivered, Medium, Unavailable, plan
from falco_operator.artifacts.oci import PULL_FAILURE_REASONS, PullFailed
from falco_operator.artifacts.oci.failures import DEFINITIVE, PASSING, REFUSED_CONTENT, withdraws
from falco_operator.artifacts.oci.registry import _raise_for_status
from falco_operator.artifacts.rules import rules_set_check
from falco_operator.status.aggregate import Agent, Target, artifact_status

PLUGINS = "/usr/share/falco/plugins"
MACRO = b"- macro: opened\n  condition: evt.type = open\n"
USES_MACRO = b"- rule: r\n  desc: d\n  condition: opened\n  output: o\n  priority: NOTICE\n"
PULLED = ArtifactKey("Rulesfile", "pulled")
PULLED_FILE = (RULES_DIR, "50-01-pulled-oci.yaml")


@pytest.mark.parametrize(
    "reason",
    ["SecretNotForRegistry", "RefusedAddress", "InsecureCredentials", "InsecureTokenRealm", "NotFound"],
)  # fmt: skip
def test_refusals_withdraw_what_the_source_resolved_to_before(reason: str) -> None:
    assert withdraws(reason)


@pytest.mark.parametrize(
    "reason",
    ["Timeout", "Unreachable", "RegistryError", "SecretNotFound", "SecretNotGranted", "InvalidSecret",
     "Unauthorized", "Forbidden",
     "DigestMismatch", "InvalidManifest", "TooLarge", "RefusedArchive", "NoPlatform", "WrongMediaType",
     "ConfigUnreadable", "BlobNotFound", "PullError", "SomethingNew"],
)  # fmt: skip
def test_passing_failures_refused_new_content_and_unforeseen_errors_keep_it(reason: str) -> None:
    assert not withdraws(reason)


def test_every_pull_failure_reason_is_classified_once() -> None:
    assert PASSING.isdisjoint(REFUSED_CONTENT)
    assert PASSING.isdisjoint(DEFINITIVE)
    assert REFUSED_CONTENT.isdisjoint(DEFINITIVE)
    assert PULL_FAILURE_REASONS == PASSING | REFUSED_CONTENT | DEFINITIVE
    assert "ConfigUnreadable" in PULL_FAILURE_REASONS, "an unreadable config is a reference not resolved"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "BlobNotFound"), (403, "Forbidden"), (429, "RegistryError"), (500, "RegistryError"),
     (502, "RegistryError"), (503, "RegistryError")],
)  # fmt: skip
@pytest.mark.parametrize(
    "url",
    ["https://registry.example/v2/a/blobs/sha256:" + "b" * 64,
     "https://storage.example/bucket/docker/registry/v2/blobs/sha256/bb/data"],  # where a redirect led
)  # fmt: skip
def test_a_registry_status_for_a_blob_is_a_reason_that_withdraws_nothing(status: int, reason: str, url: str) -> None:
    """Only a manifest's 404 says the tag is gone (``NotFound``, handled where the manifest is asked for): a layer
    or config missing under a manifest the tag still names is refused content, and what was delivered stays."""
    response = httpx.Response(status, request=httpx.Request("GET", url))
    with pytest.raises(PullFailed) as failed:
        _raise_for_status(response, "registry.example/a:1")
    assert failed.value.reason == reason
    assert not withdraws(failed.value.reason)
    if status == 404:
        assert failed.value.reason in REFUSED_CONTENT


def pulled() -> Rulesfile:
    spec = {"ociArtifact": {"reference": "registry.example/a:1"}}
    return Rulesfile.from_wire({"metadata": {"name": PULLED.name, "generation": 2}, "spec": spec})


def test_a_withdrawn_source_removes_the_files_delivered_before() -> None:
    last_good = {PULLED: Delivered({PULLED_FILE: MACRO}, digest="sha256:" + "a" * 64)}
    gone = Unavailable("Failed", "NotFound", "registry.example has no a:1", withdrawn=True)
    result = plan([pulled()], {(PULLED, Medium.OCI): gone}, last_good, plugins_dir=PLUGINS)
    (outcome,) = result.outcomes
    assert (outcome.state, outcome.reason, outcome.delivered.empty) == ("Failed", "NotFound", True)
    assert outcome.message == ("registry.example has no a:1; the files delivered before are removed (a refusal, "
                               "not a passing failure)")  # fmt: skip
    assert result.directories[RULES_DIR] == {}
    assert PULLED not in result.remembered, "a later pass does not bring them back"


def test_a_failure_that_withdraws_nothing_keeps_the_last_good_files() -> None:
    last_good = {PULLED: Delivered({PULLED_FILE: MACRO})}
    down = Unavailable("Failed", "Unreachable", "cannot reach registry.example")
    result = plan([pulled()], {(PULLED, Medium.OCI): down}, last_good, plugins_dir=PLUGINS)
    (outcome,) = result.outcomes
    assert outcome.delivered == last_good[PULLED]
    assert result.directories[RULES_DIR] == {PULLED_FILE[1]: MACRO}


def test_what_used_a_withdrawn_artifact_leaves_with_it() -> None:
    uses = Rulesfile.from_wire({"metadata": {"name": "uses", "generation": 1},
                                     "spec": {"priority": 60, "inlineRules": USES_MACRO.decode()}})  # fmt: skip
    last_good = {PULLED: Delivered({PULLED_FILE: MACRO})}
    gone = Unavailable("Failed", "NotFound", "registry.example has no a:1", withdrawn=True)
    resolutions = {(PULLED, Medium.OCI): gone}
    result = plan([pulled(), uses], resolutions, last_good, plugins_dir=PLUGINS, rules_set_check=rules_set_check)
    states = {outcome.key.name: (outcome.state, outcome.reason) for outcome in result.outcomes}
    assert states["pulled"] == ("Failed", "NotFound")
    assert states["uses"] == ("Invalid", "InvalidRules"), "withheld: its macro is gone (as for any failed source)"
    assert result.directories[RULES_DIR] == {}
    kept = plan([pulled(), uses], {(PULLED, Medium.OCI): Content(MACRO, "sha256:" + "a" * 64)}, {},
                plugins_dir=PLUGINS, rules_set_check=rules_set_check)  # fmt: skip
    assert [outcome.state for outcome in kept.outcomes] == ["Installed", "Installed"], "the pair loads together"


def test_an_unreadable_config_says_so_in_resolved_refs() -> None:
    agent = Agent("falco-abc", "node1")
    message = "the config of registry.example/a:1 is 70000 bytes, over the 65536-byte limit: ..."
    entry = {"kind": "Rulesfile", "name": "pulled", "generation": 2, "state": "Failed", "reason": "ConfigUnreadable",
             "message": message}  # fmt: skip
    reports = {"falco-abc": {"status": {"artifacts": [entry]}}}
    status = artifact_status(Target("Rulesfile", "pulled", 2), [agent], reports, None, "2026-01-01T00:00:00Z")
    resolved = next(c for c in status["conditions"] if c["type"] == "ResolvedRefs")
    assert (resolved["status"], resolved["reason"]) == ("False", "ConfigUnreadable")
    assert "70000 bytes" in resolved["message"]
