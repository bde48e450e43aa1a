"""The product in real pods, in the order a user meets it: install, a Falco, artifacts, faults, detection,
uninstall. The same scenarios run on kind (``make e2e``) and on the local real node (``make e2e-local``); the
``cluster`` fixture says which. The tests of this module share one cluster and run in file order.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from e2e.oci_artifacts import push_plugin, push_rules
from e2e.realnode.host import bounding_capabilities
from e2e.scenarios.install import OPERATOR_NAMESPACE, leftovers, uninstall_command
from e2e.scenarios.realpods import (
    AGENT,
    FALCO,
    NAMESPACE,
    PodCluster,
    apply,
    condition,
    container_status,
    falco_pods,
    file_bytes,
    get_json,
    logs,
    pod_ready,
    poll,
    reload_timestamp,
    restarts,
    rules_hashes,
    sha256_hex,
    started_at,
    wait_available,
)
from falco_operator.instance.podtemplate import LEAST_PRIVILEGED_CAPABILITIES

Json = dict[str, Any]
ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "manifests" / "samples"
SAMPLE = "falco-sample"
WEB_PORT = 8765
RULES_DIR = "/etc/falco/rules.d"
FIRST_RULES = """- rule: e2e_first_contact
  desc: a rule that needs no plugin, delivered inline
  condition: evt.type = execve and proc.name = e2e-never-run
  output: never (proc=%proc.name)
  priority: INFO
"""
FIRST_RULES_FILE = "50-03-e2e-first-inline.yaml"
RULES_REPOSITORY = "falcosecurity/rules/falco-rules"
PLUGIN_REPOSITORY = "falcosecurity/plugins/plugin/container"
OCI_RULES = b"""- rule: e2e_netcat_started
  desc: a rule delivered from the OCI registry (seed example 04)
  condition: evt.type = execve and proc.name = nc
  output: netcat started (cmdline=%proc.cmdline)
  priority: NOTICE
"""


def sample(name: str, namespace: str = NAMESPACE) -> Json:
    document: Json = YAML(typ="safe").load((SAMPLES / name).read_text())
    document["metadata"]["namespace"] = namespace
    return document


def the_falco_pod(cluster: PodCluster, falco: str = SAMPLE) -> Json:
    pods = falco_pods(cluster.kubectl, falco)
    assert len(pods) == len(cluster.nodes), [p["metadata"]["name"] for p in pods]
    return pods[0]


def falco_metrics(cluster: PodCluster, pod: Json, timeout: float = 60) -> str:
    """Falco's Prometheus metrics; it does not serve them while it reloads, so this waits for an answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return cluster.pod_get(NAMESPACE, pod["metadata"]["name"], WEB_PORT, "/metrics")
        except (OSError, subprocess.CalledProcessError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def loaded_hash(cluster: PodCluster, file_name: str) -> str | None:
    """What the running Falco of the sample says it loaded for ``file_name`` (None when it cannot be asked)."""
    try:
        return rules_hashes(falco_metrics(cluster, the_falco_pod(cluster), timeout=0)).get(file_name)
    except (OSError, AssertionError):
        return None


def programmed(cluster: PodCluster, kind: str, name: str) -> bool:
    found = cluster.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False)
    return found.returncode == 0 and condition(json.loads(found.stdout), "Programmed").get("status") == "True"


def wait_programmed(cluster: PodCluster, kind: str, name: str, timeout: float) -> None:
    """Wait until the artifact is Programmed; on time-out, say what its conditions were."""
    try:
        poll(f"{kind} {name} Programmed", lambda: programmed(cluster, kind, name), timeout=timeout)
    except AssertionError as late:
        found = cluster.kubectl("get", kind, name, "-n", NAMESPACE, "-o", "json", check=False).stdout
        conditions = (json.loads(found or "{}").get("status") or {}).get("conditions")
        raise AssertionError(f"{late}; conditions: {json.dumps(conditions)}") from None


def settled_pod(cluster: PodCluster) -> Json:
    """The sample's pod once it is Ready again after a fault."""
    poll("the Falco pod Ready", lambda: pod_ready(the_falco_pod(cluster)), timeout=180)
    return the_falco_pod(cluster)


# --- 1. install ----------------------------------------------------------------------------------------------------


def test_install_as_shipped_gives_a_ready_operator_that_holds_the_lease_and_serves_metrics(cluster: PodCluster) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        handle.write(cluster.install_text())
    began = time.monotonic()
    cluster.kubectl("apply", "--server-side", "-f", handle.name)
    os.unlink(handle.name)
    cluster.kubectl("-n", OPERATOR_NAMESPACE, "rollout", "status", "deployment/falco-operator", "--timeout=180s")
    print(f"operator Ready {time.monotonic() - began:.1f}s after apply")

    def operator_pods() -> list[Json]:
        selector = "app.kubernetes.io/name=falco-operator"
        return list(get_json(cluster.kubectl, "pods", "-n", OPERATOR_NAMESPACE, "-l", selector)["items"])

    # `rollout status` once said the rollout was done while the only pod was not Ready yet (CI, on a busy machine):
    # wait for the pod itself.
    poll("the operator pod Ready", lambda: len(p := operator_pods()) == 1 and pod_ready(p[0]), timeout=120)
    (pod,) = operator_pods()
    assert pod["spec"]["nodeName"] in cluster.nodes

    def holds_lease() -> bool:
        lease = get_json(cluster.kubectl, "lease", "falco-operator", "-n", OPERATOR_NAMESPACE)
        return str(lease["spec"].get("holderIdentity", "")).startswith(pod["metadata"]["name"])

    poll("the operator pod holds the Lease", holds_lease, timeout=60)
    path = f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/services/http:falco-operator-metrics:metrics/proxy/metrics"
    metrics = cluster.kubectl("get", "--raw", path).stdout
    assert "falco_operator_" in metrics or "controller_runtime_" in metrics, metrics[:500]


def kubelet_answer(address: str, token: str | None) -> int:
    """The HTTP status the kubelet on ``address`` gives a GET of its pod list (its serving certificate is its own
    self-signed one: not verified here, the point is who the kubelet lets in)."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"https://{address}:10250/pods", headers=headers)
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as refused:
        return int(refused.code)


def test_kubelets_let_in_only_callers_the_api_server_vouches_for(cluster: PodCluster) -> None:
    token = cluster.kubectl("create", "token", "default", "-n", "default").stdout.strip()
    for node in get_json(cluster.kubectl, "nodes")["items"]:
        (address,) = [a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP"]
        assert kubelet_answer(address, None) == 401, "anonymous callers are not authenticated"
        assert kubelet_answer(address, token) == 403, "a ServiceAccount without rights on nodes/proxy is refused"
    logs_of_operator = cluster.kubectl("logs", "-n", OPERATOR_NAMESPACE, "deployment/falco-operator", "--tail=5")
    assert logs_of_operator.stdout.strip(), "the API server's own calls to the kubelet (logs) are let in"


# --- 2. the sample Falco ----------------------------------------------------------------------------------------------


def test_the_sample_falco_starts_after_its_agent_and_loads_the_bytes_the_agent_wrote(cluster: PodCluster) -> None:
    cluster.kubectl("create", "namespace", NAMESPACE)
    falco = sample("01-falco-sample.yaml")
    if cluster.modern_ebpf is not None:
        falco["spec"] = {"engine": {"kind": "nodriver"}}
    rulesfile = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "Rulesfile",
                 "metadata": {"name": "e2e-first", "namespace": NAMESPACE},
                 "spec": {"ociArtifact": {"inline": FIRST_RULES}, "priority": 50}}  # fmt: skip
    began = time.monotonic()
    apply(cluster.kubectl, falco, rulesfile)
    cluster.kubectl("-n", NAMESPACE, "wait", f"falco/{SAMPLE}", "--for=condition=Available", "--timeout=300s")
    print(f"Falco Available {time.monotonic() - began:.1f}s after apply")

    pod = the_falco_pod(cluster)
    assert pod["spec"]["nodeName"] in cluster.nodes
    (agent_spec,) = [c for c in pod["spec"].get("initContainers", []) if c["name"] == AGENT]
    assert agent_spec.get("restartPolicy") == "Always", "the agent runs as a native sidecar"
    assert container_status(pod, AGENT).get("ready")
    assert container_status(pod, FALCO).get("ready")
    assert started_at(pod, AGENT) <= started_at(pod, FALCO)
    agent_log = logs(cluster.kubectl, NAMESPACE, pod["metadata"]["name"], AGENT)
    falco_log = logs(cluster.kubectl, NAMESPACE, pod["metadata"]["name"], FALCO)
    assert "materializ" in agent_log.lower() or "wrote" in agent_log.lower(), agent_log[-2000:]
    assert "Falco version" in falco_log or "Loading rules" in falco_log, falco_log[-2000:]

    wait_programmed(cluster, "rulesfile", "e2e-first", timeout=120)
    written = file_bytes(cluster.kubectl, NAMESPACE, pod["metadata"]["name"], FALCO, f"{RULES_DIR}/{FIRST_RULES_FILE}")
    assert written == FIRST_RULES.encode()
    poll("Falco's metric names the bytes the agent wrote",
         lambda: loaded_hash(cluster, FIRST_RULES_FILE) == sha256_hex(written), timeout=60)  # fmt: skip


# --- 3. the seed examples from a registry the pods reach ------------------------------------------------------------


def test_seed_examples_reach_the_pod_and_an_edit_is_one_hot_reload(cluster: PodCluster) -> None:
    registry = cluster.registry()
    push_rules(registry.push, RULES_REPOSITORY, "latest", OCI_RULES)
    plugin = container_plugin_library()
    push_plugin(registry.push, PLUGIN_REPOSITORY, "0.2.4", {"amd64": plugin, "arm64": b"\x7fELF"})
    # The registry has a private address: the operator must let the agents reach it (docs/security.md).
    cluster.kubectl("-n", OPERATOR_NAMESPACE, "patch", "deployment", "falco-operator", "--type=json", "-p",
                    json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/args/-",
                                 "value": "--allow-private-registries"}]))  # fmt: skip
    cluster.kubectl("-n", OPERATOR_NAMESPACE, "rollout", "status", "deployment/falco-operator", "--timeout=180s")

    def from_registry(name: str) -> Json:
        document = sample(name)
        reference = str(document["spec"]["ociArtifact"]["reference"])
        document["spec"]["ociArtifact"]["reference"] = f"{registry.host}/{reference.split('/', 1)[1]}"
        document["spec"]["ociArtifact"]["registry"] = {"plainHTTP": True}
        return document

    # FalcoRules of a namespace load where the cluster's administrator lets them (all namespaces here).
    cluster.kubectl("-n", NAMESPACE, "patch", "falco", SAMPLE, "--type=merge", "-p",
                    json.dumps({"spec": {"falcoRules": {"namespaceSelector": {}}}}))  # fmt: skip
    config = sample("07-config-label-selector.yaml")
    config["spec"]["selector"]["matchLabels"] = {"kubernetes.io/hostname": cluster.nodes[0]}
    documents = [from_registry("04-rulesfile-oci.yaml"), sample("05-rulesfile-inline.yaml"),
                 from_registry("06-plugin-container.yaml"), config]  # fmt: skip
    apply(cluster.kubectl, *documents)
    for kind, name in (("rulesfile", "falco-rules"), ("plugin", "container"), ("config", "config-label-selector")):
        wait_programmed(cluster, kind, name, timeout=240)
    hashes = rules_hashes(falco_metrics(cluster, the_falco_pod(cluster)))
    assert any(name.endswith("falco-rules-inline.yaml") for name in hashes), hashes
    # Seed 07 turns the libs logger to debug, whose lines would soon rotate Falco's log away; seed 09's FalcoRule
    # names the rule seed 05 defines (the operator refuses the collision): both go before 09 comes.
    cluster.kubectl("delete", "rulesfile/falco-rules", "config/config-label-selector", "-n", NAMESPACE)
    apply(cluster.kubectl, sample("09-falcorule-bash.yaml"))
    wait_programmed(cluster, "falcorule", "bash", timeout=120)
    assert any("falcorules" in name for name in rules_hashes(falco_metrics(cluster, the_falco_pod(cluster))))
    # Seed 09's condition has no event type: it matches every system call of every bash, and under Falco's
    # default rule_matching (first) it would hide the rule scenario 5 watches for.
    cluster.kubectl("delete", "falcorule", "bash", "-n", NAMESPACE)

    pod = settled_pod(cluster)
    name = pod["metadata"]["name"]
    before = reload_timestamp(falco_metrics(cluster, pod))
    assert before is not None
    edited = FIRST_RULES.replace("e2e-never-run", "e2e-edited")
    env = dict(os.environ, KUBE_EDITOR="sed -i s/e2e-never-run/e2e-edited/")
    subprocess.run([*cluster.kubectl_argv(), "edit", "-n", NAMESPACE, "rulesfile", "e2e-first"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    poll("the edit loaded", lambda: loaded_hash(cluster, FIRST_RULES_FILE) == sha256_hex(edited.encode()), timeout=60)
    reloaded = reload_timestamp(falco_metrics(cluster, pod))
    assert reloaded != before
    time.sleep(5)  # a second reload would follow the first within a few seconds; none may come
    after = the_falco_pod(cluster)
    assert (after["metadata"]["name"], restarts(after, FALCO)) == (name, restarts(pod, FALCO))
    assert reload_timestamp(falco_metrics(cluster, after)) == reloaded, "one edit, one hot reload"


def container_plugin_library() -> bytes:
    from e2e.falco import find_falco

    binaries = find_falco()
    worker = binaries.container_plugin.parent / "container-worker" / "libcontainer.so"
    return (worker if worker.exists() else binaries.container_plugin).read_bytes()


# --- 4. faults on the node -------------------------------------------------------------------------------------------


def test_a_killed_agent_is_restarted_and_falco_keeps_its_files_without_a_reload(cluster: PodCluster) -> None:
    pod = settled_pod(cluster)
    name = pod["metadata"]["name"]
    hashes = rules_hashes(falco_metrics(cluster, pod))
    agent_restarts, falco_restarts = restarts(pod, AGENT), restarts(pod, FALCO)
    before = reload_timestamp(falco_metrics(cluster, pod))
    cluster.kill_container(NAMESPACE, name, AGENT)
    poll("the kubelet restarted the agent", lambda: restarts(the_falco_pod(cluster), AGENT) > agent_restarts, 120)
    pod = settled_pod(cluster)
    assert restarts(pod, FALCO) == falco_restarts
    time.sleep(5)  # what a recovering agent would rewrite, it does within its first pass
    assert rules_hashes(falco_metrics(cluster, pod)) == hashes
    assert reload_timestamp(falco_metrics(cluster, pod)) == before, "the restarted agent made Falco reload"


def test_a_killed_falco_comes_back_with_the_same_rules(cluster: PodCluster) -> None:
    pod = settled_pod(cluster)
    hashes = rules_hashes(falco_metrics(cluster, pod))
    falco_restarts = restarts(pod, FALCO)
    cluster.kill_container(NAMESPACE, pod["metadata"]["name"], FALCO)
    poll("the kubelet restarted Falco", lambda: restarts(the_falco_pod(cluster), FALCO) > falco_restarts, 120)
    settled_pod(cluster)
    poll("Falco loaded the same files", lambda: rules_hashes(falco_metrics(cluster, the_falco_pod(cluster))) == hashes,
         timeout=60)  # fmt: skip


def test_a_runtime_and_kubelet_restart_keeps_the_pod_and_its_files(cluster: PodCluster) -> None:
    pod = settled_pod(cluster)
    hashes = rules_hashes(falco_metrics(cluster, pod))
    cluster.restart_runtime()
    pod = settled_pod(cluster)
    poll("Falco serves the same files", lambda: rules_hashes(falco_metrics(cluster, the_falco_pod(cluster))) == hashes,
         timeout=120)  # fmt: skip
    assert programmed(cluster, "rulesfile", "e2e-first")


def test_a_deleted_pod_is_replaced_and_the_replacement_converges(cluster: PodCluster) -> None:
    pod = settled_pod(cluster)
    hashes = rules_hashes(falco_metrics(cluster, pod))
    cluster.kubectl("delete", "pod", "-n", NAMESPACE, pod["metadata"]["name"], "--wait=true", "--timeout=120s")
    poll("a new Falco pod Ready",
         lambda: (p := falco_pods(cluster.kubectl, SAMPLE)) != [] and p[0]["metadata"]["uid"] != pod["metadata"]["uid"]
         and pod_ready(p[0]), timeout=240)  # fmt: skip
    poll("the replacement loaded the same files",
         lambda: rules_hashes(falco_metrics(cluster, the_falco_pod(cluster))) == hashes, timeout=120)  # fmt: skip


# --- 5. detection with the modern eBPF engine ------------------------------------------------------------------------


def test_a_shell_by_kubectl_exec_raises_the_falcorule_of_its_namespace_only(cluster: PodCluster) -> None:
    if cluster.modern_ebpf is not None:
        pytest.skip(f"modern_ebpf cannot run on this machine: {cluster.modern_ebpf} (docs/testing.md)")
    other = "falco-e2e-other"
    cluster.kubectl("create", "namespace", other)
    image = "falco-operator:0.1.0"
    for namespace in (NAMESPACE, other):
        cluster.kubectl("-n", namespace, "run", "shell-target", f"--image={image}", "--restart=Never",
                        "--image-pull-policy=IfNotPresent", "--command", "--", "sleep", "3600")  # fmt: skip
    for namespace in (NAMESPACE, other):
        cluster.kubectl("-n", namespace, "wait", "pod/shell-target", "--for=condition=Ready", "--timeout=120s")
    rule = {"apiVersion": "artifact.falcosecurity.dev/v1alpha1", "kind": "FalcoRule",
            "metadata": {"name": "e2e-shell", "namespace": NAMESPACE},
            "spec": {"rule": "e2e_shell", "desc": "a shell in a pod of this namespace",
                     "condition": "evt.type = execve and proc.name = bash",
                     "output": "e2e shell seen (ns=%k8s.ns.name pod=%k8s.pod.name)",
                     "priority": "WARNING"}}  # fmt: skip
    apply(cluster.kubectl, rule)
    wait_programmed(cluster, "falcorule", "e2e-shell", timeout=120)
    pod_name = the_falco_pod(cluster)["metadata"]["name"]

    def fired(namespace: str) -> bool:
        return f"e2e shell seen (ns={namespace} " in logs(cluster.kubectl, NAMESPACE, pod_name, FALCO)

    def exec_shell() -> bool:
        for namespace in (NAMESPACE, other):
            cluster.kubectl("-n", namespace, "exec", "shell-target", "--", "bash", "-c", "true")
        return fired(NAMESPACE)

    try:
        poll("the FalcoRule of falco-e2e fired for its pod's shell", exec_shell, timeout=120, interval=3)
    except AssertionError as late:
        log = logs(cluster.kubectl, NAMESPACE, pod_name, FALCO)
        story = [line for line in log.splitlines() if "[libs]" not in line]
        raise AssertionError(f"{late}; Falco's log ends with:\n" + "\n".join(story[-80:])) from None
    assert not fired(other), "a FalcoRule fires only for pods of its own namespace"


def test_a_least_privileged_falco_with_image_defaults_detects_with_no_artifacts(cluster: PodCluster) -> None:
    """``imageDefaults: true``: the image's default rules and container plugin, no registry, no Rulesfile; and
    modern_ebpf with ``leastPrivileged``: capabilities instead of a privileged container."""
    if cluster.modern_ebpf is not None:
        pytest.skip(f"modern_ebpf cannot run on this machine: {cluster.modern_ebpf} (docs/testing.md)")
    namespace = "falco-e2e-defaults"
    cluster.kubectl("create", "namespace", namespace)
    falco: Json = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
             "metadata": {"name": "defaults", "namespace": namespace},
             "spec": {"imageDefaults": True, "engine": {"kind": "modern_ebpf", "leastPrivileged": True}}}  # fmt: skip
    missing = [name for name in LEAST_PRIVILEGED_CAPABILITIES if name not in bounding_capabilities()]
    if missing:
        # The runtime cannot grant what its own bounding set lacks (runc: "unable to apply caps"). Run with the rest,
        # which still proves modern_ebpf needs no privileged container here; docs/testing.md says which machines.
        granted = [name for name in LEAST_PRIVILEGED_CAPABILITIES if name not in missing]
        falco["spec"]["podTemplateSpec"] = {"spec": {"containers": [
            {"name": FALCO, "securityContext": {"capabilities": {"add": granted}}}]}}  # fmt: skip
    apply(cluster.kubectl, falco)
    wait_available(cluster.kubectl, "defaults", namespace)
    (pod,) = falco_pods(cluster.kubectl, "defaults", namespace)
    pod_name = pod["metadata"]["name"]
    context = next(c for c in pod["spec"]["containers"] if c["name"] == FALCO)["securityContext"]
    assert not context.get("privileged"), context
    assert "BPF" in context["capabilities"]["add"], context

    def image_rules_loaded() -> bool:  # Falco serves no metrics while it reloads (the agent's first fragments)
        try:
            return "falco_rules.yaml" in rules_hashes(cluster.pod_get(namespace, pod_name, WEB_PORT, "/metrics"))
        except (OSError, subprocess.CalledProcessError, AssertionError):
            return False

    poll("Falco's metrics list the image's falco_rules.yaml", image_rules_loaded, timeout=120)
    overrides = {
        "spec": {
            "containers": [
                {
                    "name": "reader",
                    "image": "falco-operator:0.1.0",
                    "command": ["sleep", "3600"],
                    "securityContext": {"runAsUser": 0},
                }
            ]
        }
    }
    cluster.kubectl("-n", namespace, "run", "reader", "--image=falco-operator:0.1.0", "--restart=Never",
                    f"--overrides={json.dumps(overrides)}")  # fmt: skip
    cluster.kubectl("-n", namespace, "wait", "pod/reader", "--for=condition=Ready", "--timeout=120s")

    def alerted() -> bool:
        cluster.kubectl("-n", namespace, "exec", "reader", "--", "cat", "/etc/shadow", check=False)
        log = logs(cluster.kubectl, namespace, pod_name, FALCO)
        return "Sensitive file opened for reading by non-trusted program" in log

    poll("the image's default rule fired for cat /etc/shadow in a pod", alerted, timeout=120, interval=3)
    cluster.kubectl("delete", "namespace", namespace, "--timeout=180s")


# A stand-in for Falcosidekick (no image registry here): the product image's Python answers /ping as Falcosidekick
# does and prints every alert Falco posts, one JSON line each.
SIDEKICK_STAND_IN = """
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ping' else 404); self.end_headers(); self.wfile.write(b'pong')
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get('Content-Length') or 0))
        print('ALERT ' + body.decode(errors='replace').replace(chr(10), ' '), flush=True)
        self.send_response(200); self.end_headers()
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(('', 2801), Handler).serve_forever()
"""


def test_a_falco_wired_to_a_sidekick_component_posts_its_alerts_to_the_sidekick_service(cluster: PodCluster) -> None:
    """``spec.sidekick``: the operator delivers Falco's http_output as an artifact; a real alert reaches the
    Component's Service; removing the reference stops it."""
    if cluster.modern_ebpf is not None:
        pytest.skip(f"modern_ebpf cannot run on this machine: {cluster.modern_ebpf} (docs/testing.md)")
    namespace = "falco-e2e-sidekick"
    cluster.kubectl("create", "namespace", namespace)
    component: Json = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Component",
                       "metadata": {"name": "sidekick", "namespace": namespace},
                       "spec": {"component": {"type": "falcosidekick"}, "podTemplateSpec": {"spec": {"containers": [
                           {"name": "falcosidekick", "image": "falco-operator:0.1.0",
                            "command": ["python3", "-c", SIDEKICK_STAND_IN]}]}}}}  # fmt: skip
    apply(cluster.kubectl, component)
    cluster.kubectl("-n", namespace, "wait", "component/sidekick", "--for=condition=Available", "--timeout=110s")
    service_ip = get_json(cluster.kubectl, "service", "-n", namespace, "sidekick")["spec"]["clusterIP"]
    # No cluster DNS on this node: the Service's name resolves through the pod's /etc/hosts.
    host_alias = {"ip": service_ip, "hostnames": [f"sidekick.{namespace}.svc"]}
    falco: Json = {"apiVersion": "instance.falcosecurity.dev/v1alpha1", "kind": "Falco",
                   "metadata": {"name": "wired", "namespace": namespace},
                   "spec": {"imageDefaults": True, "sidekick": {"name": "sidekick"},
                            "podTemplateSpec": {"spec": {"hostAliases": [host_alias]}}}}  # fmt: skip
    apply(cluster.kubectl, falco)
    wait_available(cluster.kubectl, "wired", namespace)
    cluster.kubectl("-n", namespace, "wait", "falco/wired", "--for=condition=ComponentsReady", "--timeout=60s")
    (pod,) = falco_pods(cluster.kubectl, "wired", namespace)
    pod_name = pod["metadata"]["name"]
    selector = "app.kubernetes.io/name=falcosidekick,app.kubernetes.io/instance=sidekick"
    (sidekick_pod,) = get_json(cluster.kubectl, "pods", "-n", namespace, "-l", selector)["items"]
    cluster.kubectl("-n", namespace, "run", "reader", "--image=falco-operator:0.1.0", "--restart=Never",
                    '--overrides={"spec": {"containers": [{"name": "reader", "image": "falco-operator:0.1.0", '
                    '"command": ["sleep", "3600"], "securityContext": {"runAsUser": 0}}]}}')  # fmt: skip
    cluster.kubectl("-n", namespace, "wait", "pod/reader", "--for=condition=Ready", "--timeout=120s")

    def received() -> list[str]:
        text = logs(cluster.kubectl, namespace, sidekick_pod["metadata"]["name"], "falcosidekick")
        return [line for line in text.splitlines() if line.startswith("ALERT ")]

    def alert_reached_the_sidekick() -> bool:
        cluster.kubectl("-n", namespace, "exec", "reader", "--", "cat", "/etc/shadow", check=False)
        return any("Sensitive file opened for reading" in line for line in received())

    poll("Falco's alert for cat /etc/shadow reached the sidekick Service", alert_reached_the_sidekick, timeout=150,
         interval=3)  # fmt: skip
    alert = json.loads(next(line for line in received() if "Sensitive file" in line).removeprefix("ALERT "))
    assert alert["rule"] == "Read sensitive file untrusted", alert
    assert "Sensitive file opened for reading" in alert["output"], alert

    before = reload_timestamp(cluster.pod_get(namespace, pod_name, WEB_PORT, "/metrics"))
    cluster.kubectl("-n", namespace, "patch", "falco", "wired", "--type=merge", "-p", '{"spec": {"sidekick": null}}')

    def config_gone() -> bool:
        return cluster.kubectl("-n", namespace, "get", "config", "wired-wiring-sidekick", check=False).returncode != 0

    poll("the generated Config is gone", config_gone, timeout=60)

    def reloaded() -> bool:
        try:
            return reload_timestamp(cluster.pod_get(namespace, pod_name, WEB_PORT, "/metrics")) not in (None, before)
        except (OSError, subprocess.CalledProcessError, AssertionError):
            return False

    poll("Falco reloaded without the http output", reloaded, timeout=60)
    count = len(received())
    falco_alerts = logs(cluster.kubectl, namespace, pod_name, FALCO).count("Sensitive file opened for reading")

    def falco_alerted_again() -> bool:
        cluster.kubectl("-n", namespace, "exec", "reader", "--", "cat", "/etc/shadow", check=False)
        return logs(cluster.kubectl, namespace, pod_name, FALCO).count("Sensitive file opened") > falco_alerts

    poll("Falco alerted again (to stdout only)", falco_alerted_again, timeout=60, interval=3)
    assert len(received()) == count, "no alert reaches the sidekick once the reference is gone"
    cluster.kubectl("delete", "namespace", namespace, "--timeout=180s")


# --- 6. uninstall ---------------------------------------------------------------------------------------------------


def test_uninstall_while_everything_runs_leaves_nothing_of_the_project(cluster: PodCluster) -> None:
    result = cluster.kubectl(*uninstall_command(), check=False)
    assert result.returncode == 0, result.stderr
    poll("nothing of the project left in the API", lambda: leftovers(cluster.kubectl, frozenset({SAMPLE})) == [],
         timeout=180)  # fmt: skip
    poll("no container of the project on the node", lambda: not project_containers(cluster), timeout=120)


def project_containers(cluster: PodCluster) -> list[str]:
    listing = get_json(cluster.kubectl, "pods", "-A")
    names = [(p["metadata"]["namespace"], p["metadata"]["name"]) for p in listing["items"]]
    return [f"{ns}/{name}" for ns, name in names if ns == OPERATOR_NAMESPACE or name.startswith(SAMPLE)]
