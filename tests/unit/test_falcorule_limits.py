"""FalcoRule fields have length limits, in the model and in the CRD the API server enforces."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from falco_operator.api import ALL_KINDS, FalcoRule, custom_resource_definition


def falco_rule(**spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "r", "namespace": "team"},
            "spec": {"rule": "r", "condition": "proc.name = bash", **spec}}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("condition", "a" * (8 * 1024 + 1)),
        ("output", "%" + "a" * (8 * 1024)),
        ("desc", "d" * (4 * 1024 + 1)),
        ("rule", "r" * 1025),
        ("tags", [f"t{i}" for i in range(33)]),
        ("tags", ["t" * 129]),
    ],
)
def test_a_field_over_its_limit_is_refused(field: str, value: Any) -> None:
    with pytest.raises(ValidationError, match="at most"):
        FalcoRule.model_validate(falco_rule(**{field: value}))


def test_fields_at_their_limits_are_accepted() -> None:
    FalcoRule.model_validate(falco_rule(condition="a" * 8 * 1024, output="o" * 8 * 1024, desc="d" * 4 * 1024,
                                        tags=["t" * 128] * 32))  # fmt: skip


def test_the_crd_carries_the_limits() -> None:
    info = next(info for info in ALL_KINDS if info.kind == "FalcoRule")
    schema = custom_resource_definition(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["condition"]["maxLength"] == 8192
    assert spec["output"]["maxLength"] == 8192
    assert spec["desc"]["maxLength"] == 4096
    assert spec["rule"]["maxLength"] == 1024
    assert spec["tags"]["maxItems"] == 32
    assert spec["tags"]["items"]["maxLength"] == 128
