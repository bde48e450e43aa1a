"""What informers drop from the objects they cache: fields no reader of the cache looks at."""

from __future__ import annotations

from falco_operator.kube.informer import LAST_APPLIED, strip_last_applied, strip_managed_fields


def test_kubectls_last_applied_copy_is_dropped_and_other_annotations_kept() -> None:
    rules = "- rule: r\n" * 1000
    obj = {"metadata": {"name": "r", "annotations": {LAST_APPLIED: '{"spec": {"inlineRules": "' + rules + '"}}',
                                                     "artifact.falcosecurity.dev/rollout": "pause"}},
           "spec": {"inlineRules": rules}}  # fmt: skip
    kept = strip_last_applied(obj)
    assert kept["metadata"]["annotations"] == {"artifact.falcosecurity.dev/rollout": "pause"}
    assert kept["spec"] == {"inlineRules": rules}


def test_objects_without_annotations_or_metadata_pass_unchanged() -> None:
    assert strip_last_applied({"metadata": {"name": "r"}}) == {"metadata": {"name": "r"}}
    assert strip_last_applied({"kind": "Rulesfile"}) == {"kind": "Rulesfile"}
    assert strip_last_applied({"metadata": {"annotations": None}}) == {"metadata": {"annotations": None}}


def test_managed_fields_are_dropped() -> None:
    obj = {"metadata": {"name": "r", "managedFields": [{"manager": "kubectl"}]}}
    assert strip_managed_fields(obj) == {"metadata": {"name": "r"}}
