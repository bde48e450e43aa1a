"""The wiring of a Falco to its Components, rendered: the Config and Plugin it gets, when, and its condition."""

from __future__ import annotations

from typing import Any

import pytest

from falco_operator.api import Falco
from falco_operator.api.plain import Config, Plugin
from falco_operator.artifacts import parse_config
from falco_operator.artifacts.audience import Audience
from falco_operator.artifacts.plugins import plugin_entry
from falco_operator.artifacts.yamldoc import dump_yaml
from falco_operator.wiring.reconcile import generated_object, references
from falco_operator.wiring.render import (
    CONDITION,
    Verdict,
    condition,
    generated_name,
    judge,
    sidekick_fragment,
)
from falco_operator.wiring.setup import AVAILABILITY_CHANGED, names

Json = dict[str, Any]
K8SMETA_REQUIRED = {"collectorHostname", "collectorPort", "nodeName"}
K8SMETA_PROPERTIES = K8SMETA_REQUIRED | {"verbosity", "caPEMBundle", "hostProc"}
"""The k8smeta plugin's init_config schema (falcosecurity/plugins, plugins/k8smeta/src/plugin.cpp): these keys,
no others (additionalProperties: false)."""


def component(name: str, kind: str, available: str | None = "True", **spec: Any) -> Json:
    status = {"conditions": [{"type": "Available", "status": available, "reason": "PodsAvailable",
                              "message": "1/1 pods available"}]} if available else {}  # fmt: skip
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Component",
            "metadata": {"name": name, "namespace": "sec"}, "spec": {"component": {"type": kind}, **spec},
            "status": status}  # fmt: skip


def raw_falco(**spec: Any) -> Json:
    return {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
            "metadata": {"name": "falco", "namespace": "sec", "uid": "u-1", "generation": 3}, "spec": spec}  # fmt: skip


def test_the_sidekick_fragment_is_a_config_an_agent_accepts_with_json_alerts_to_the_service() -> None:
    fragment = sidekick_fragment("sidekick", "sec")
    assert parse_config(dump_yaml(fragment)) == {
        "json_output": True,
        "json_include_output_property": True,
        "http_output": {"enabled": True, "url": "http://sidekick.sec.svc:2801/"},
    }
    generated = Config.from_wire(generated_object(raw_falco(sidekick={"name": "sidekick"}), "sidekick", "sidekick"))
    assert generated.metadata.name == "falco-wiring-sidekick"
    assert generated.spec.priority == 60  # after users' Configs of the default priority
    assert generated.spec.config == fragment


def test_the_k8smeta_plugin_names_the_image_library_and_fits_the_plugin_schema() -> None:
    raw = generated_object(raw_falco(metacollector={"name": "meta"}), "metacollector", "meta")
    plugin = Plugin.from_wire(raw)
    assert plugin.spec.oci_artifact is None
    entry = plugin_entry(plugin, "/var/lib/falco-artifacts/plugins")
    assert entry["name"] == "k8smeta"
    assert entry["library_path"] == "libk8smeta.so"  # Falco's /usr/share/falco/plugins/libk8smeta.so, the image's
    init = entry["init_config"]
    assert init == {"collectorHostname": "meta.sec.svc", "collectorPort": 45000, "nodeName": "${FALCO_K8S_NODE_NAME}"}
    assert K8SMETA_REQUIRED <= set(init) <= K8SMETA_PROPERTIES
    assert isinstance(init["collectorPort"], int)


def test_a_generated_artifact_is_owned_by_its_falco_and_reaches_no_other() -> None:
    raw = generated_object(raw_falco(sidekick={"name": "sk"}), "sidekick", "sk")
    metadata = raw["metadata"]
    assert metadata["ownerReferences"][0]["uid"] == "u-1"
    assert metadata["ownerReferences"][0]["controller"] is True
    assert metadata["labels"]["instance.falcosecurity.dev/wiring"] == "sidekick"
    assert metadata["labels"]["instance.falcosecurity.dev/component"] == "sk"
    audience = Audience.of_object(raw)
    assert audience is not None
    assert audience.includes_falco("falco", {})
    assert not audience.includes_falco("other", {})


@pytest.mark.parametrize(
    ("role", "found", "reason", "keep"),
    [
        ("sidekick", None, "ComponentNotFound", False),
        ("sidekick", component("x", "metacollector"), "WrongComponentType", False),
        ("metacollector", component("x", "falcosidekick"), "WrongComponentType", False),
        ("sidekick", component("x", "falcosidekick", available="False"), "ComponentNotAvailable", True),
        ("sidekick", component("x", "falcosidekick", available=None), "ComponentNotAvailable", True),
    ],
)  # fmt: skip
def test_a_component_that_cannot_be_wired_says_why(role: Any, found: Json | None, reason: str, keep: bool) -> None:
    verdict = judge(role, "x", "sec", found)
    assert not verdict.ready
    assert (verdict.reason, verdict.keep) == (reason, keep)
    assert "Component sec/x" in verdict.message


def test_a_deleted_component_is_not_found() -> None:
    found = component("x", "falcosidekick")
    found["metadata"]["deletionTimestamp"] = "2026-12-06T00:00:00Z"
    assert judge("sidekick", "x", "sec", found).reason == "ComponentNotFound"


def test_an_available_component_of_the_right_type_is_wired() -> None:
    sidekick = judge("sidekick", "x", "sec", component("x", "falcosidekick"))
    meta = judge("metacollector", "m", "sec", component("m", "metacollector"))
    assert sidekick.ready
    assert meta.ready
    assert "http://x.sec.svc:2801/" in sidekick.message
    assert "m.sec.svc:45000" in meta.message


def test_the_condition_is_true_only_when_every_reference_is_wired() -> None:
    assert condition([], 1) is None
    wired = Verdict("sidekick", "x", True, "Wired", "sidekick wired")
    waiting = Verdict("metacollector", "m", False, "ComponentNotAvailable", "m is not Available", keep=True)
    ok = condition([wired], 4)
    assert ok is not None
    assert (ok["type"], ok["status"], ok["reason"], ok["observedGeneration"]) == (CONDITION, "True", "Wired", 4)
    bad = condition([wired, waiting], 4)
    assert bad is not None
    assert (bad["status"], bad["reason"], bad["message"]) == ("False", "ComponentNotAvailable", "m is not Available")
    kept = condition([wired, waiting], 4, frozenset({"metacollector"}))
    assert kept is not None
    assert kept["message"].endswith("its earlier wiring stays until it is back")


def test_references_and_the_falcos_a_component_event_concerns() -> None:
    falco = Falco.model_validate(raw_falco(sidekick={"name": "sk"}, metacollector={"name": "meta"}))
    assert references(falco) == {"sidekick": "sk", "metacollector": "meta"}
    assert references(Falco.model_validate(raw_falco())) == {}
    assert names(raw_falco(sidekick={"name": "sk"}), "sk")
    assert names(raw_falco(metacollector={"name": "meta"}), "meta")
    assert not names(raw_falco(sidekick={"name": "sk"}), "meta")
    assert generated_name("falco", "metacollector") == "falco-wiring-metacollector"


def test_only_a_change_of_availability_passes_the_component_predicate() -> None:
    before, after = component("x", "falcosidekick", "False"), component("x", "falcosidekick", "True")
    assert AVAILABILITY_CHANGED.update(before, after)
    counts = component("x", "falcosidekick", "True")
    counts["status"]["availableReplicas"] = 2
    assert not AVAILABILITY_CHANGED.update(after, counts)


TLS = {"tls": {"secretRef": {"name": "serving"}, "caBundle": {"configMapRef": {"name": "ca", "key": "bundle.pem"}}}}


def test_a_tls_metacollector_is_wired_with_its_ca_bundle_mounted_and_named_in_the_k8smeta_entry() -> None:
    from falco_operator.api import Falco
    from falco_operator.instance.options import BuildOptions
    from falco_operator.instance.workload import build_workload
    from falco_operator.wiring.render import K8SMETA_CA_FILE, CASource, k8smeta_plugin_config, metacollector_ca

    tls_collector = component("x", "metacollector", metacollector=TLS)
    assert judge("metacollector", "x", "sec", tls_collector).ready
    assert "over TLS" in judge("metacollector", "x", "sec", tls_collector).message
    source = metacollector_ca(tls_collector)
    assert source == CASource("configMap", "ca", "bundle.pem")
    assert metacollector_ca(component("x", "metacollector")) is None
    secret_bundle = {"tls": {"secretRef": {"name": "serving"}, "caBundle": {"secretRef": {"name": "ca"}}}}
    assert metacollector_ca(component("x", "metacollector", metacollector=secret_bundle)) == CASource(
        "secret", "ca", "ca.crt"
    )
    assert k8smeta_plugin_config("x", "sec", tls=True)["initConfig"]["caPEMBundle"] == K8SMETA_CA_FILE
    assert "caPEMBundle" not in k8smeta_plugin_config("x", "sec")["initConfig"]

    falco = Falco.model_validate({"metadata": {"name": "f", "namespace": "sec", "uid": "u"},
                                  "spec": {"metacollector": {"name": "x"}}})  # fmt: skip
    raw = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
           "metadata": {"name": "f", "namespace": "sec", "uid": "u"}}  # fmt: skip
    pod = build_workload(falco, raw, BuildOptions(), source)
    spec = pod["spec"]["template"]["spec"]
    volume = next(v for v in spec["volumes"] if v["name"] == "k8smeta-ca")
    assert volume == {
        "name": "k8smeta-ca",
        "configMap": {"name": "ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]},
    }
    falco_container = next(c for c in spec["containers"] if c["name"] == "falco")
    mount = next(m for m in falco_container["volumeMounts"] if m["name"] == "k8smeta-ca")
    assert f"{mount['mountPath']}/ca.crt" == K8SMETA_CA_FILE
    assert mount["readOnly"] is True
