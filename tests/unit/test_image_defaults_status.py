"""``status.artifacts.imageDefaults`` of a Falco: what its spec asks the pods to load from the image, present only
with ``spec.imageDefaults: true``, and cleared by the status patch when the field is turned off."""

from __future__ import annotations

from typing import Any

from falco_operator.api import Falco
from falco_operator.instance.falcoconfig import rules_files
from falco_operator.instance.status import artifact_summary, desired_status, status_patch

Json = dict[str, Any]
WORKLOAD = {"metadata": {"generation": 1}, "status": {"observedGeneration": 1, "desiredNumberScheduled": 1,
                                                      "numberAvailable": 1, "updatedNumberScheduled": 1}}  # fmt: skip


def status(image_defaults: bool, old: Json | None = None) -> Json:
    summary = artifact_summary("f", {}, [], image_defaults)
    return desired_status(kind="DaemonSet", workload=WORKLOAD, version="0.44.1", error=None, generation=1, old=old,
                          now="t", artifacts=summary)  # fmt: skip


def test_a_falco_with_image_defaults_says_which_rules_file_and_plugin_its_pods_are_asked_to_load() -> None:
    summary = artifact_summary("f", {}, [], image_defaults=True)
    image = {"rules": ["/etc/falco/falco_rules.yaml"], "plugins": ["container"]}
    assert summary == {"selected": 0, "programmed": 0, "failed": 0, "imageDefaults": image}
    assert summary["imageDefaults"]["rules"] == rules_files(True)[:1], "the rules file falco.yaml lists before rules.d"


def test_a_bare_falco_says_nothing_of_the_image() -> None:
    assert artifact_summary("f", {}, []) == {"selected": 0, "programmed": 0, "failed": 0}


def test_the_summary_is_a_valid_falco_status() -> None:
    raw = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco", "metadata": {"name": "f"},
           "spec": {"imageDefaults": True}, "status": status(True)}  # fmt: skip
    falco = Falco.model_validate(raw)
    assert falco.status is not None
    assert falco.status.artifacts is not None
    image = falco.status.artifacts.image_defaults
    assert image is not None
    assert (image.rules, image.plugins) == (["/etc/falco/falco_rules.yaml"], ["container"])
    assert falco.to_wire()["status"] == raw["status"], "the model keeps every key the operator writes"


def test_a_steady_status_is_equal_so_nothing_is_written() -> None:
    first = status(True)
    assert status(True, old=first) == first


def test_turning_the_field_off_clears_the_nested_key_in_the_merge_patch() -> None:
    on = status(True)
    off = status(False, old=on)
    assert "imageDefaults" not in off["artifacts"]
    patch = status_patch(on, off)
    assert patch["artifacts"] == {"selected": 0, "programmed": 0, "failed": 0, "imageDefaults": None}
    assert patch["conditions"] == off["conditions"], "lists are replaced whole, not patched"


def test_the_patch_clears_top_level_keys_and_leaves_a_first_status_as_it_is() -> None:
    assert status_patch(None, {"a": {"b": 1}}) == {"a": {"b": 1}}
    assert status_patch({"a": 1, "gone": {"x": 1}}, {"a": 2}) == {"a": 2, "gone": None}
