"""Pure pieces of the operator's hardening: the version status reports, Event notes within the API's byte limit."""

from __future__ import annotations

from falco_operator.instance.version import reported_version
from falco_operator.kube.events import MAX_NOTE_BYTES, truncate_utf8

DIGEST = "sha256:" + "ab" * 32


def test_a_digest_pinned_image_reports_its_digest_not_a_guess() -> None:
    assert reported_version(f"docker.io/falcosecurity/falco@{DIGEST}", "0.40.0", "0.44.1") == DIGEST
    assert reported_version(f"falco:0.43.0@{DIGEST}", None, "0.44.1") == "0.43.0"
    assert reported_version("reg:5000/falco:x", None, "0.44.1") == "x"
    assert reported_version(None, "0.40.0", "0.44.1") == "0.40.0"


def test_event_notes_are_cut_by_bytes_never_inside_a_character() -> None:
    note = "é" * 900  # 1800 bytes
    cut = truncate_utf8(note, MAX_NOTE_BYTES)
    assert len(cut.encode()) <= MAX_NOTE_BYTES
    assert cut == "é" * 512
    assert truncate_utf8("short", MAX_NOTE_BYTES) == "short"


def test_log_lines_keep_the_fields_passed_with_extra() -> None:
    import json
    import logging

    from falco_operator.kube.logs import JsonFormatter, TextFormatter

    record = logging.LogRecord("falco_operator.x", logging.INFO, __file__, 1, "pulled %s", ("ref",), None)
    record.__dict__.update({"digest": "sha256:ab", "bytes": 42})
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["msg"], entry["digest"], entry["bytes"]) == ("pulled ref", "sha256:ab", 42)
    assert "digest=sha256:ab" in TextFormatter().format(record)


def test_leader_election_refuses_timings_that_allow_two_leaders() -> None:
    import pytest

    from falco_operator.kube import check_timings

    check_timings(15, 10, 2)
    for lease, renew, retry in ((10, 10, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0)):
        with pytest.raises(ValueError, match="lease duration > renew deadline > retry period"):
            check_timings(lease, renew, retry)


def test_the_run_command_rejects_bad_leader_timings_with_a_readable_error(capsys: object) -> None:
    import pytest

    from falco_operator.cli import main

    with pytest.raises(SystemExit) as exited:
        main(["run", "--leader-election-lease-duration", "5", "--leader-election-renew-deadline", "10"])
    assert exited.value.code == 2
    assert "lease duration > renew deadline" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_leader_identities_are_unique_per_process_and_name_the_pod() -> None:
    from falco_operator.kube import unique_identity

    first, second = unique_identity("falco-operator-7d9f-abcde"), unique_identity("falco-operator-7d9f-abcde")
    assert first != second
    assert first.startswith("falco-operator-7d9f-abcde_")


def test_the_pod_grace_period_covers_draining_and_releasing_the_lease() -> None:
    from falco_operator.cli import build_parser
    from falco_operator.manifests import manager_objects

    args = build_parser().parse_args(["run"])
    deployment = manager_objects()["manager/deployment.yaml"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    release_bound = 2 * args.leader_election_retry_period  # LeaderElector.release waits at most this long
    assert args.graceful_shutdown_timeout + release_bound < grace


def test_pull_policies_are_spelled_out_as_kubernetes_defaults_them() -> None:
    from falco_operator.api import Falco
    from falco_operator.instance.options import BuildOptions
    from falco_operator.instance.workload import build_pod_template, default_pull_policy

    assert default_pull_policy("falco") == "Always"
    assert default_pull_policy("reg:5000/falco:latest") == "Always"
    assert default_pull_policy("reg:5000/falco") == "Always", "a registry port is not a tag"
    assert default_pull_policy("falco:0.44.1") == "IfNotPresent"
    assert default_pull_policy(f"falco@{DIGEST}") == "IfNotPresent"
    falco = Falco.model_validate({
        "apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
        "metadata": {"name": "f", "namespace": "n"},
        "spec": {"podTemplateSpec": {"spec": {"containers": [{"name": "falco", "image": "mine:latest"}],
                                              "initContainers": [{"name": "artifact-operator", "image": "a:1",
                                                                  "imagePullPolicy": "Never"}]}}},
    })  # fmt: skip
    spec = build_pod_template(falco, BuildOptions())["spec"]
    policies = {c["name"]: c["imagePullPolicy"] for c in spec["containers"] + spec.get("initContainers", [])}
    assert policies["falco"] == "Always"
    assert policies["artifact-operator"] == "Never", "the user's choice wins"
