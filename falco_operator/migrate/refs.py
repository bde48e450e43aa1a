"""falcoctl artifact references (``falco-rules:5``, ``ghcr.io/falcosecurity/plugins/plugin/k8saudit:0.16``) resolved
to the OCI sources of Rulesfiles and Plugins.

Short references name an entry of falcoctl's ``falcosecurity`` index (falcosecurity.github.io/falcoctl/index.yaml):
its type and repository, all in ghcr.io, are copied below. ``k8saudit-rules`` for instance lives in
``falcosecurity/plugins/ruleset/k8saudit``, not in a repository of that name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from ..api.ocirefs import REFERENCE_PATTERN, parse_reference

ArtifactType = Literal["rulesfile", "plugin"]
INDEX_REGISTRY = "ghcr.io"
FALCOSECURITY_INDEX_URL = "https://falcosecurity.github.io/falcoctl/index.yaml"
FALCOSECURITY_INDEX: dict[str, tuple[ArtifactType, str]] = {
    "application-rules": ("rulesfile", "falcosecurity/rules/application-rules"),
    "cloudtrail": ("plugin", "falcosecurity/plugins/plugin/cloudtrail"),
    "cloudtrail-rules": ("rulesfile", "falcosecurity/plugins/ruleset/cloudtrail"),
    "collector": ("plugin", "falcosecurity/plugins/plugin/collector"),
    "container": ("plugin", "falcosecurity/plugins/plugin/container"),
    "dummy": ("plugin", "falcosecurity/plugins/plugin/dummy"),
    "dummy_c": ("plugin", "falcosecurity/plugins/plugin/dummy_c"),
    "dummy_rs": ("plugin", "falcosecurity/plugins/plugin/dummy_rs"),
    "falco-incubating-rules": ("rulesfile", "falcosecurity/rules/falco-incubating-rules"),
    "falco-rules": ("rulesfile", "falcosecurity/rules/falco-rules"),
    "falco-sandbox-rules": ("rulesfile", "falcosecurity/rules/falco-sandbox-rules"),
    "gcpaudit": ("plugin", "falcosecurity/plugins/plugin/gcpaudit"),
    "gcpaudit-rules": ("rulesfile", "falcosecurity/plugins/ruleset/gcpaudit"),
    "github": ("plugin", "falcosecurity/plugins/plugin/github"),
    "github-rules": ("rulesfile", "falcosecurity/plugins/ruleset/github"),
    "json": ("plugin", "falcosecurity/plugins/plugin/json"),
    "k8saudit": ("plugin", "falcosecurity/plugins/plugin/k8saudit"),
    "k8saudit-aks": ("plugin", "falcosecurity/plugins/plugin/k8saudit-aks"),
    "k8saudit-eks": ("plugin", "falcosecurity/plugins/plugin/k8saudit-eks"),
    "k8saudit-gke": ("plugin", "falcosecurity/plugins/plugin/k8saudit-gke"),
    "k8saudit-gke-rules": ("rulesfile", "falcosecurity/plugins/ruleset/k8saudit-gke"),
    "k8saudit-ovh": ("plugin", "falcosecurity/plugins/plugin/k8saudit-ovh"),
    "k8saudit-rules": ("rulesfile", "falcosecurity/plugins/ruleset/k8saudit"),
    "k8smeta": ("plugin", "falcosecurity/plugins/plugin/k8smeta"),
    "kafka": ("plugin", "falcosecurity/plugins/plugin/kafka"),
    "krsi": ("plugin", "falcosecurity/plugins/plugin/krsi"),
    "okta": ("plugin", "falcosecurity/plugins/plugin/okta"),
    "okta-rules": ("rulesfile", "falcosecurity/plugins/ruleset/okta"),
}
_BY_REPOSITORY = {(INDEX_REGISTRY, repository): name for name, (_, repository) in FALCOSECURITY_INDEX.items()}
_SHORT = re.compile(r"^(?P<name>[a-z0-9][a-z0-9_.-]*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?$")

# Plugins falcoctl installs as dependencies (resolveDeps) of a rulesfile: the rules' required_plugin_versions.
# k8saudit-rules 0.16 and later require json 0.7.0 (the k8saudit plugin itself comes with its own reference).
RULES_DEPENDENCIES: dict[str, tuple[tuple[str, str], ...]] = {"k8saudit-rules": (("json", "0.7"),)}


@dataclass(frozen=True)
class Artifact:
    """A resolved reference: the index name (or the repository's last component), its type, its full reference."""

    name: str
    type: ArtifactType
    reference: str


class UnresolvedRef(ValueError):
    pass


def resolve(ref: str) -> Artifact:
    """The artifact a falcoctl reference names; ``UnresolvedRef`` with the reason when it cannot be told."""
    short = _SHORT.match(ref)
    if short and "/" not in ref:
        name = short["name"]
        if name not in FALCOSECURITY_INDEX:
            raise UnresolvedRef(f"{ref!r} is not in the falcosecurity index; give its full OCI reference")
        kind, repository = FALCOSECURITY_INDEX[name]
        return Artifact(name, kind, f"{INDEX_REGISTRY}/{repository}:{short['tag'] or 'latest'}")
    if not re.match(REFERENCE_PATTERN, ref):
        raise UnresolvedRef(f"{ref!r} is not an OCI reference")
    host, repository, tag, digest = parse_reference(ref)
    suffix = f"@{digest}" if digest else f":{tag}"
    known = _BY_REPOSITORY.get((host, repository))
    if known:
        return Artifact(known, FALCOSECURITY_INDEX[known][0], f"{host}/{repository}{suffix}")
    parts = repository.split("/")
    if "plugin" in parts[:-1]:
        return Artifact(parts[-1], "plugin", f"{host}/{repository}{suffix}")
    if "rules" in parts[:-1] or "ruleset" in parts[:-1]:
        return Artifact(parts[-1], "rulesfile", f"{host}/{repository}{suffix}")
    raise UnresolvedRef(f"{ref!r}: cannot tell a rulesfile from a plugin by its repository")
