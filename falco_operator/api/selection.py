"""How a label selector matches labels, for the models (``base``) and the plain classes (``plain``) alike."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class Requirement(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def operator(self) -> str: ...
    @property
    def values(self) -> Sequence[str] | None: ...


def selector_matches(
    match_labels: Mapping[str, str] | None, match_expressions: Iterable[Requirement] | None, labels: Mapping[str, str]
) -> bool:
    """``metav1.LabelSelector`` semantics: every label and every requirement must hold (empty: everything)."""
    if any(labels.get(key) != value for key, value in (match_labels or {}).items()):
        return False
    for requirement in match_expressions or ():
        present = requirement.key in labels
        value = labels.get(requirement.key)
        values = requirement.values or ()
        if requirement.operator == "In" and not (present and value in values):
            return False
        if requirement.operator == "NotIn" and present and value in values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True
