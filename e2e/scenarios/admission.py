"""Objects the API server must reject, each with what its message must say.

Shared by the admission tests and listed in docs/api.md (a unit test keeps the two in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DIGEST = "sha256:" + "a" * 64


@dataclass(frozen=True)
class BadObject:
    id: str
    kind: str
    spec: Any
    expect: tuple[str, ...]
    """Fragments the API server's message must contain: the field and the problem."""
    omit_spec: bool = False
    code: int = 422
    """422 for schema and CEL violations; strict decoding errors (unknown fields) are 400."""
    name: str = "bad"
    """The object's name (a few cases are about the name itself)."""


def _rules(**spec: Any) -> dict[str, Any]:
    return {"inlineRules": "- list: l\n  items: []", **spec}


BAD_OBJECTS: tuple[BadObject, ...] = (
    BadObject("falco-name-with-a-dot", "Falco", {}, ("a Falco's name must be a DNS label",), name="falco.prod"),
    BadObject("falco-name-starting-with-a-digit", "Falco", {}, ("a Falco's name must be a DNS label",),
              name="1falco"),
    BadObject("falco-name-over-63-characters", "Falco", {}, ("at most 63 lowercase letters",), name="f" * 64),
    BadObject("falco-unknown-type", "Falco", {"type": "StatefulSet"},
              ("spec.type", 'Unsupported value: "StatefulSet"')),
    BadObject("falco-replicas-on-daemonset", "Falco", {"type": "DaemonSet", "replicas": 2},
              ("spec.replicas", "replicas can only be set when type is Deployment")),
    BadObject("falco-replicas-without-type", "Falco", {"replicas": 2},
              ("spec.replicas", "replicas can only be set when type is Deployment")),
    BadObject("falco-zero-replicas", "Falco", {"type": "Deployment", "replicas": 0},
              ("spec.replicas", "greater than or equal to 1")),
    BadObject("falco-strategy-on-daemonset", "Falco", {"strategy": {"type": "Recreate"}},
              ("spec.strategy", "strategy can only be set when type is Deployment")),
    BadObject("falco-update-strategy-on-deployment", "Falco",
              {"type": "Deployment", "updateStrategy": {"type": "OnDelete"}},
              ("spec.updateStrategy", "updateStrategy can only be set when type is DaemonSet")),
    BadObject("falco-unknown-engine", "Falco", {"engine": {"kind": "gvisor"}},
              ("spec.engine.kind", 'Unsupported value: "gvisor"')),
    BadObject("falco-legacy-ebpf-engine", "Falco", {"engine": {"kind": "ebpf"}},
              ("spec.engine.kind", 'Unsupported value: "ebpf"')),
    BadObject("falco-least-privileged-kmod", "Falco", {"engine": {"kind": "kmod", "leastPrivileged": True}},
              ("spec.engine.leastPrivileged", "leastPrivileged applies to kind modern_ebpf only")),
    BadObject("falco-cpus-per-buffer-for-kmod", "Falco", {"engine": {"kind": "kmod", "cpusForEachBuffer": 1}},
              ("spec.engine.cpusForEachBuffer", "cpusForEachBuffer applies to kind modern_ebpf or auto only")),
    BadObject("falco-buffer-preset-11", "Falco", {"engine": {"kind": "modern_ebpf", "bufSizePreset": 11}},
              ("spec.engine.bufSizePreset", "less than or equal to 10")),
    BadObject("falco-buffer-preset-without-driver", "Falco", {"engine": {"kind": "nodriver", "bufSizePreset": 4}},
              ("spec.engine.bufSizePreset", "bufSizePreset applies to a kernel engine")),
    BadObject("falco-toleration-bad-operator", "Falco", {"tolerations": [{"key": "k", "operator": "Sometimes"}]},
              ("spec.tolerations[0].operator", 'Unsupported value: "Sometimes"')),
    BadObject("falco-resources-not-a-quantity", "Falco", {"resources": {"requests": {"memory": "plenty"}}},
              ("spec.resources.requests[memory]", '"plenty"', "must be a quantity such as")),
    BadObject("falco-container-without-name", "Falco",
              {"podTemplateSpec": {"spec": {"containers": [{"image": "falco:custom"}]}}},
              ("spec.podTemplateSpec.spec.containers[0].name", "Required value")),
    BadObject("falco-bad-pull-policy", "Falco",
              {"podTemplateSpec": {"spec": {"containers": [{"name": "falco", "imagePullPolicy": "Sometimes"}]}}},
              ("spec.podTemplateSpec.spec.containers[0].imagePullPolicy", 'Unsupported value: "Sometimes"')),
    BadObject("falco-toleration-bad-effect", "Falco",
              {"podTemplateSpec": {"spec": {"tolerations": [{"key": "k", "effect": "Sometimes"}]}}},
              ("spec.podTemplateSpec.spec.tolerations[0].effect", "Unsupported value")),
    BadObject("rulesfile-priority-100", "Rulesfile", _rules(priority=100),
              ("spec.priority", "less than or equal to 99")),
    BadObject("rulesfile-negative-priority", "Rulesfile", _rules(priority=-1),
              ("spec.priority", "greater than or equal to 0")),
    BadObject("rulesfile-no-source", "Rulesfile", {"priority": 10},
              ("spec", "a Rulesfile needs at least one source")),
    BadObject("rulesfile-missing-spec", "Rulesfile", None, ("spec", "Required value"), omit_spec=True),
    BadObject("rulesfile-both-oci-forms", "Rulesfile",
              {"ociArtifact": {"reference": "ghcr.io/a/b:1", "image": {"repository": "a/b"}}},
              ("spec.ociArtifact", "set either reference (one string) or image with registry, not both")),
    BadObject("rulesfile-reference-with-registry-name", "Rulesfile",
              {"ociArtifact": {"reference": "ghcr.io/a/b:1", "registry": {"name": "quay.io"}}},
              ("spec.ociArtifact", "registry.name cannot be combined with reference")),
    BadObject("rulesfile-pull-secret-and-auth", "Rulesfile",
              {"ociArtifact": {"reference": "ghcr.io/a/b:1", "pullSecret": {"secretName": "s"},
                               "registry": {"auth": {"secretRef": {"name": "s"}}}}},
              ("spec.ociArtifact", "set either pullSecret or registry.auth, not both")),
    BadObject("rulesfile-plain-http-and-tls", "Rulesfile",
              {"ociArtifact": {"image": {"repository": "a/b"},
                               "registry": {"plainHTTP": True, "tls": {"insecureSkipVerify": True}}}},
              ("spec.ociArtifact.registry", "plainHTTP and tls are mutually exclusive")),
    BadObject("rulesfile-empty-oci-artifact", "Rulesfile", {"ociArtifact": {}},
              ("spec.ociArtifact", "ociArtifact needs a reference, an image or inline rules")),
    BadObject("rulesfile-inline-twice", "Rulesfile",
              {"inlineRules": "- list: a\n  items: []", "ociArtifact": {"inline": "- list: b\n  items: []"}},
              ("spec", "set inlineRules or ociArtifact.inline, not both")),
    BadObject("rulesfile-malformed-reference", "Rulesfile", {"ociArtifact": {"reference": "ghcr.io/Falco Rules"}},
              ("spec.ociArtifact.reference", "must be an OCI reference such as")),
    BadObject("rulesfile-reference-with-a-scheme", "Rulesfile",
              {"ociArtifact": {"reference": "http://registry.local:5000/team/rules:1"}},
              ("spec.ociArtifact.reference", "must not start with a scheme such as https:// or http://",
               "registry.plainHTTP")),
    BadObject("rulesfile-registry-name-with-a-scheme", "Rulesfile",
              {"ociArtifact": {"image": {"repository": "a/b"}, "registry": {"name": "https://ghcr.io"}}},
              ("spec.ociArtifact.registry.name", "must not start with a scheme")),
    BadObject("rulesfile-uppercase-repository", "Rulesfile",
              {"ociArtifact": {"image": {"repository": "Team/Rules"}}},
              ("spec.ociArtifact.image.repository", "must be a lowercase repository path")),
    BadObject("rulesfile-malformed-digest", "Rulesfile",
              {"ociArtifact": {"image": {"repository": "a/b", "tag": "sha256:xyz"}}},
              ("spec.ociArtifact.image.tag", "must be a tag (up to 128 letters")),
    BadObject("rulesfile-bad-refresh-interval", "Rulesfile",
              {"ociArtifact": {"reference": "ghcr.io/a/b:1", "refreshInterval": "soon"}},
              ("spec.ociArtifact.refreshInterval", "must be a duration such as 90s, 5m or 1h30m")),
    BadObject("rulesfile-bad-selector-operator", "Rulesfile",
              _rules(selector={"matchExpressions": [{"key": "k", "operator": "Maybe"}]}),
              ("spec.selector.matchExpressions[0].operator", 'Unsupported value: "Maybe"')),
    BadObject("rulesfile-configmap-without-name", "Rulesfile", {"configMapRef": {"key": "x.yaml"}},
              ("spec.configMapRef.name", "Required value")),
    BadObject("plugin-empty-oci-artifact", "Plugin", {"ociArtifact": {}},
              ("spec.ociArtifact", "ociArtifact needs a reference or an image")),
    BadObject("config-no-source", "Config", {"priority": 20},
              ("spec", "a Config needs config or configMapRef")),
    BadObject("falcorule-without-condition", "FalcoRule", {"rule": "r", "output": "o"},
              ("spec.condition", "Required value")),
    BadObject("falcorule-without-rule", "FalcoRule", {"condition": "proc.name = bash"},
              ("spec.rule", "Required value")),
    BadObject("falcorule-unknown-priority", "FalcoRule", {"rule": "r", "condition": "c", "priority": "URGENT"},
              ("spec.priority", "must be one of emergency, alert, critical")),
    BadObject("falco-version-not-an-image-tag", "Falco", {"version": "0.44.1 ; rm -rf /"},
              ("spec.version", "version is the Falco image tag")),
    BadObject("falco-resource-quantity-not-a-quantity", "Falco",
              {"podTemplateSpec": {"spec": {"containers": [{"name": "falco",
                                                            "resources": {"limits": {"memory": "lots"}}}]}}},
              ("spec.podTemplateSpec.spec.containers[0].resources.limits[memory]", '"lots"',
               "must be a quantity such as")),
    BadObject("falco-init-container-request-not-a-quantity", "Falco",
              {"podTemplateSpec": {"spec": {"initContainers": [{"name": "init", "image": "busybox",
                                                                "resources": {"requests": {"cpu": "fast"}}}]}}},
              ("initContainers[0].resources.requests[cpu]", '"fast"', "must be a quantity such as")),
    BadObject("falco-container-name-not-a-dns-label", "Falco",
              {"podTemplateSpec": {"spec": {"containers": [{"name": "Side_Car", "image": "busybox"}]}}},
              ("spec.podTemplateSpec.spec.containers[0].name", "must be a DNS label")),
    BadObject("unknown-field-strict", "Rulesfile", _rules(prioritty=10),
              ('unknown field "spec.prioritty"',), code=400),
)  # fmt: skip
