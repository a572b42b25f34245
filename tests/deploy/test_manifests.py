"""The class deployment, checked offline: deploy/k8s against Kubernetes' API schemas, deploy/Dockerfile
against hadolint, and how the manifests, the image and the app fit together.

No cluster, docker daemon or network is needed: kubernetes-validate carries the API schemas, hadolint
comes as a wheel. Every kind of check is also shown to fail on a broken copy of the real files, so a
green run means the checks looked, not that they could not see.
"""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_TEMPLATE = "secret.example.yaml"
K8S_VERSIONS = ("1.32", "1.37")  # the oldest Kubernetes we support, the newest the validator knows
HEALTH = "/_stcore/health"
PORT = 8501
START_COMMAND = ["streamlit", "run", "app.py", "--server.port", str(PORT), "--server.address", "0.0.0.0"]
DEV_ONLY = {"tests", "bench", "deploy"}  # top-level folders the running app never needs
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")

Resource = dict[str, Any]


# ------------------------------------------------------------------------------------------------
# Loading


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """A SafeLoader that refuses duplicate keys (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """Return the mapping, or raise on a key that appears twice."""
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def parse_yaml(text: str) -> list[Resource]:
    """Return the non-empty documents of a YAML stream (a fresh copy each time: tests may change it)."""
    return copy.deepcopy(_parsed(text))


@cache
def _parsed(text: str) -> list[Resource]:
    return [doc for doc in yaml.load_all(text, Loader=StrictLoader) if doc]


@cache
def kustomization() -> Resource:
    """Return deploy/k8s/kustomization.yaml."""
    return parse_yaml((K8S / "kustomization.yaml").read_text())[0]


@cache
def applied_text() -> dict[str, str]:
    """Return file name -> text of every manifest that `kubectl apply -k deploy/k8s` applies."""
    return {name: (K8S / name).read_text() for name in kustomization()["resources"]}


def load(texts: dict[str, str]) -> list[Resource]:
    """Return the resources of these manifest texts."""
    return [doc for text in texts.values() for doc in parse_yaml(text)]


@cache
def template_secret() -> Resource:
    """Return the Secret template (never applied by kustomize)."""
    (secret,) = parse_yaml((K8S / SECRET_TEMPLATE).read_text())
    return secret


def every_manifest() -> list[tuple[str, Resource]]:
    """Return (file, resource) for every manifest in deploy/k8s, the template included."""
    return [
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in parse_yaml(path.read_text())
    ]


def of_kind(resources: list[Resource], kind: str) -> list[Resource]:
    """Return the resources of one kind."""
    return [r for r in resources if r["kind"] == kind]


def only(resources: list[Resource], kind: str, name: str | None = None) -> Resource:
    """Return the one resource of this kind (and name)."""
    found = [r for r in of_kind(resources, kind) if name is None or r["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(resources: list[Resource]) -> list[Resource]:
    """Return the containers of the Deployment's pods."""
    return list(only(resources, "Deployment")["spec"]["template"]["spec"]["containers"])


def env_of(container: Resource) -> dict[str, Resource]:
    """Return a container's env entries by name."""
    return {e["name"]: e for e in container.get("env", [])}


def cpu_cores(quantity: str | int | float) -> float:
    """Return a Kubernetes CPU quantity ("2", "1500m", 2) in cores."""
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


# ------------------------------------------------------------------------------------------------
# The manifests against the Kubernetes API schemas


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any network access fail: schema validation must work without one."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the network was used: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_every_manifest_is_applied_except_the_secret_template() -> None:
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    resources = set(kustomization()["resources"])
    assert files - resources == {SECRET_TEMPLATE}, "a manifest is neither applied nor the template"
    assert resources <= files, "kustomization.yaml lists a file that does not exist"
    assert SECRET_TEMPLATE not in resources  # applying it would replace the class's real secret


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("source", "resource"),
    every_manifest(),
    ids=[f"{f}:{r['kind']}/{r['metadata']['name']}" for f, r in every_manifest()],
)
def test_manifest_is_valid_kubernetes(source: str, resource: Resource, version: str, offline: None) -> None:
    # strict: unknown fields (a misspelt key) are errors, not silently dropped by the API server
    kubernetes_validate.validate(resource, version, strict=True)


BROKEN_YAML = {
    "replicas as a word": ("deployment.yaml", "replicas: 2", "replicas: two"),
    "env value unquoted (a number)": ("deployment.yaml", 'value: "2"', "value: 2"),
    "misspelt container field": ("deployment.yaml", "imagePullPolicy:", "imagePullPolicyy:"),
    "service port by name": ("service.yaml", "port: 80", "port: http"),
    "misspelt path type": ("ingress.yaml", "pathType: Prefix", "pathtype: Prefix"),
    "budget as a list": ("pdb.yaml", "minAvailable: 1", "minAvailable: [1]"),
}


@pytest.mark.parametrize("change", BROKEN_YAML.values(), ids=list(BROKEN_YAML))
def test_validation_rejects_a_broken_manifest(change: tuple[str, str, str], offline: None) -> None:
    file, old, new = change
    text = applied_text()[file]
    assert old in text, f"{file} no longer contains {old!r}: update this test"
    broken = parse_yaml(text.replace(old, new, 1))
    with pytest.raises(kubernetes_validate.ValidationError):
        for resource in broken:
            kubernetes_validate.validate(resource, K8S_VERSIONS[-1], strict=True)


def test_yaml_with_a_duplicate_key_is_refused() -> None:
    text = applied_text()["deployment.yaml"].replace("  replicas: 2\n", "  replicas: 2\n  replicas: 3\n", 1)
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key 'replicas'"):
        parse_yaml(text)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in kustomize) is not installed")
def test_kustomize_renders_what_these_tests_check() -> None:
    rendered = parse_yaml(subprocess.run(["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, check=True).stdout)
    ours = load(applied_text())
    key: Callable[[Resource], tuple[str, str, str]] = lambda r: (
        r["kind"],
        r["metadata"]["name"],
        r["metadata"].get("namespace", ""),
    )
    assert sorted(map(key, rendered)) == sorted(map(key, ours))
    image = kustomization()["images"][0]
    assert [c["image"] for c in containers(rendered)] == [f"{image['newName']}:{image['newTag']}"]


# ------------------------------------------------------------------------------------------------
# How the manifests fit together: each check returns its problems, [] when all is well


def namespace_problems(resources: list[Resource]) -> list[str]:
    """Every resource in the kustomization's namespace, which the Namespace creates."""
    want = kustomization()["namespace"]
    problems = [
        f"{r['kind']}/{r['metadata']['name']} is in namespace {r['metadata'].get('namespace')!r}, not {want!r}"
        for r in resources
        if r["kind"] != "Namespace" and r["metadata"].get("namespace") != want
    ]
    if only(resources, "Namespace")["metadata"]["name"] != want:
        problems.append("the Namespace is not the kustomization's namespace")
    if template_secret()["metadata"].get("namespace") != want:
        problems.append("the Secret template is for another namespace")
    return problems


def selector_problems(resources: list[Resource]) -> list[str]:
    """The Deployment's selector, the Service, the budget and the spread all select the pods."""
    deployment = only(resources, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment selector": deployment["spec"]["selector"]["matchLabels"],
        "Service torchlab": only(resources, "Service", "torchlab")["spec"]["selector"],
        "PodDisruptionBudget": only(resources, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for i, spread in enumerate(deployment["spec"]["template"]["spec"].get("topologySpreadConstraints", [])):
        selectors[f"topologySpreadConstraints[{i}]"] = spread["labelSelector"]["matchLabels"]
    return [
        f"{what} {labels} does not select the pods {pod_labels}"
        for what, labels in selectors.items()
        if not labels or any(pod_labels.get(k) != v for k, v in labels.items())
    ]


def port_problems(resources: list[Resource]) -> list[str]:
    """Service -> container port, Ingress -> Service port and probe ports all resolve."""
    problems = []
    (container,) = containers(resources)
    container_ports = {p["containerPort"] for p in container["ports"]} | {p.get("name") for p in container["ports"]}
    if PORT not in container_ports:
        problems.append(f"the container does not listen on {PORT}")
    service = only(resources, "Service", "torchlab")
    for port in service["spec"]["ports"]:
        if port.get("targetPort", port["port"]) not in container_ports:
            problems.append(f"Service port {port['name']} targets {port.get('targetPort')!r}, not a container port")
    for probe in PROBES:
        if container[probe]["httpGet"]["port"] not in container_ports:
            problems.append(f"{probe} checks port {container[probe]['httpGet']['port']!r}, not a container port")
    services = {s["metadata"]["name"]: s for s in of_kind(resources, "Service")}
    for ingress in of_kind(resources, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = services[backend["name"]]["spec"]["ports"] if backend["name"] in services else []
                names = {p.get("name") for p in ports} | {p["port"] for p in ports}
                if backend["port"].get("name", backend["port"].get("number")) not in names:
                    problems.append(
                        f"Ingress {ingress['metadata']['name']} {path['path']} -> {backend} matches no Service port"
                    )
    return problems


def probe_problems(resources: list[Resource]) -> list[str]:
    """Startup, readiness and liveness probes all ask Streamlit's health endpoint."""
    (container,) = containers(resources)
    problems = [
        f"{probe} does not GET {HEALTH}"
        for probe in PROBES
        if container.get(probe, {}).get("httpGet", {}).get("path") != HEALTH
    ]
    startup = container.get("startupProbe", {})
    if startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) < 60:
        problems.append("the startup probe gives torch's import less than a minute")
    return problems


def resource_problems(resources: list[Resource]) -> list[str]:
    """Requests and limits set; TORCHLAB_THREADS equal to the whole CPUs requested."""
    (container,) = containers(resources)
    requests, limits = container["resources"].get("requests", {}), container["resources"].get("limits", {})
    problems = [
        f"no {kind} {what}"
        for what in ("cpu", "memory")
        for kind, d in (("request", requests), ("limit", limits))
        if what not in d
    ]
    if problems:
        return problems
    threads = env_of(container).get("TORCHLAB_THREADS", {}).get("value")
    cpus = cpu_cores(requests["cpu"])
    if threads is None or not str(threads).isdigit() or int(threads) != cpus:
        problems.append(f"TORCHLAB_THREADS is {threads!r}, the CPU request {requests['cpu']!r}")
    if cpu_cores(limits["cpu"]) != cpus or limits["memory"] != requests["memory"]:
        problems.append("requests differ from limits: not Guaranteed QoS, so timing lessons get noisy neighbours")
    return problems


def secret_problems(resources: list[Resource]) -> list[str]:
    """Every Secret key the pods read exists in the template; the replica name comes from the pod."""
    secret = template_secret()
    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
    (container,) = containers(resources)
    env = env_of(container)
    problems = []
    for name, entry in env.items():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref and (ref["name"] != secret["metadata"]["name"] or ref["key"] not in keys):
            problems.append(f"{name} reads {ref['name']}/{ref['key']}, which the Secret template does not have")
    if env.get("TORCHLAB_COOKIE_SECRET", {}).get("valueFrom", {}).get("secretKeyRef") is None:
        problems.append("TORCHLAB_COOKIE_SECRET does not come from a Secret")
    replica = env.get("TORCHLAB_REPLICA", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if replica != "metadata.name":
        problems.append(f"TORCHLAB_REPLICA comes from {replica!r}, not the pod's name")
    return problems


def security_problems(resources: list[Resource]) -> list[str]:
    """The pod meets Pod Security "restricted" and writes only to its emptyDir volumes."""
    pod = only(resources, "Deployment")["spec"]["template"]["spec"]
    (container,) = containers(resources)
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    problems = []
    if context.get("runAsNonRoot") is not True or context.get("runAsUser", 0) == 0:
        problems.append("not runAsNonRoot with a non-zero runAsUser")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("privilege escalation allowed")
    if context.get("capabilities", {}).get("drop") != ["ALL"]:
        problems.append("capabilities not all dropped")
    if context.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        problems.append("no RuntimeDefault seccomp profile")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append("root filesystem writable")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    if "emptyDir" not in volumes.get(mounts.get("/tmp", ""), {}):
        problems.append("/tmp is not an emptyDir")
    problems += [f"volume {n} is not an emptyDir" for n, v in volumes.items() if "emptyDir" not in v]
    problems += [f"pod sets {key}" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    if pod.get("enableServiceLinks") is not False:
        problems.append("service links on: the Service 'torchlab' would inject TORCHLAB_* variables")
    if pod.get("automountServiceAccountToken") is not False:
        problems.append("a service account token the app never uses is mounted")
    labels = only(resources, "Namespace")["metadata"].get("labels", {})
    if labels.get("pod-security.kubernetes.io/enforce") != "restricted":
        problems.append("the namespace does not enforce Pod Security 'restricted'")
    return problems


def replicas_problems(resources: list[Resource]) -> list[str]:
    """At least two replicas, never all down at once in a rollout or a drain."""
    spec = only(resources, "Deployment")["spec"]
    replicas = spec.get("replicas", 1)
    problems = [] if isinstance(replicas, int) and replicas >= 2 else [f"replicas: {replicas!r}, fewer than two"]
    if spec.get("strategy", {}).get("rollingUpdate", {}).get("maxUnavailable") != 0:
        problems.append("a rollout may take replicas down before new ones are ready")
    if only(resources, "PodDisruptionBudget")["spec"].get("minAvailable", 0) < 1:
        problems.append("a drain may take every replica")
    return problems


# ------------------------------------------------------------------------------------------------
# The edge: which Ingress path serves a URL, affinity, timeouts, headers


def route(resources: list[Resource], url: str) -> tuple[Resource, Resource] | None:
    """Return (Ingress, path rule) that serves this URL on the class's host, by the Ingress spec's precedence."""
    host = of_kind(resources, "Ingress")[0]["spec"]["rules"][0]["host"]
    path = url.split("?", 1)[0]
    parts = [p for p in path.split("/") if p]
    matches = []
    for ingress in of_kind(resources, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule.get("host") != host:
                continue
            for candidate in rule["http"]["paths"]:
                prefix = [p for p in candidate["path"].split("/") if p]
                if candidate["pathType"] == "Exact" and path == candidate["path"]:
                    matches.append((len(candidate["path"]), 1, ingress, candidate))
                elif candidate["pathType"] == "Prefix" and parts[: len(prefix)] == prefix:
                    matches.append((len(candidate["path"]), 0, ingress, candidate))
    if not matches:
        return None
    _, _, ingress, candidate = max(matches, key=lambda m: (m[0], m[1]))  # the longest path, then Exact over Prefix
    return ingress, candidate


# What the page needs (the installed Streamlit's frontend asks for these) and what students must
# never reach through the edge. Uploads and custom components are unused by this app.
STUDENT_URLS = [
    "/",
    "/tensors?lang=zh&tab=layout",
    "/static/js/index.js",
    "/media/abc.png",
    "/_stcore/stream",
    "/_stcore/health",
    "/_stcore/host-config",
]
CLOSED_URLS = [
    "/_stcore/metrics",
    "/_stcore/metrics/",
    "/_stcore/metrics?families=cache_memory_bytes",
    "/_stcore/agent/openapi.json",
    "/_stcore/agent/interact",
    "/_stcore/agent/mcp",
    "/_stcore/script-health-check",
    "/_stcore/upload_file/session/file",
    "/_stcore/bidi-components/x/index.js",
    "/_stcore",
]
UNUSED_BY_THIS_APP = {"_stcore/upload_file", "_stcore/bidi-components", "_stcore/agent"}
NGINX = "nginx.ingress.kubernetes.io/"


def routing_problems(resources: list[Resource]) -> list[str]:
    """Students' URLs reach the pods through the affinity Ingress; Streamlit's internals reach nothing."""
    services = {s["metadata"]["name"]: s for s in of_kind(resources, "Service")}
    found = route(resources, "/")
    if found is None:
        return ["nothing serves /"]
    main = found[0]
    problems = []
    for url in STUDENT_URLS:
        found = route(resources, url)
        if found is None or found[0] is not main or found[1]["backend"]["service"]["name"] != "torchlab":
            problems.append(f"{url} does not reach the app through the affinity Ingress")
    for url in CLOSED_URLS:
        found = route(resources, url)
        if found is None:
            continue  # no rule: the controller answers 404 itself
        ingress, rule = found
        ranges = ingress["metadata"].get("annotations", {}).get(NGINX + "whitelist-source-range", "0.0.0.0/0")
        if ingress is main or "selector" in services[rule["backend"]["service"]["name"]]["spec"]:
            problems.append(f"{url} reaches the app")
        elif not all(ipaddress.ip_network(r.strip()).is_loopback for r in ranges.split(",")):
            problems.append(f"{url} is open to {ranges}")
    return problems


def edge_problems(resources: list[Resource]) -> list[str]:
    """Cookie affinity, websocket-long timeouts and security headers on the students' Ingress."""
    found = route(resources, "/")
    notes = found[0]["metadata"].get("annotations", {}) if found else {}
    problems = []
    wanted = {"affinity": "cookie", "affinity-mode": "persistent", "session-cookie-change-on-failure": "true"}
    problems += [f"{NGINX}{k} is not {v!r}" for k, v in wanted.items() if notes.get(NGINX + k) != v]
    # The local nginx's cookie (deploy/nginx.conf) carries the replica's name, which the app compares
    # with TORCHLAB_REPLICA; the controller's cookie carries a hash, so it must be called otherwise.
    session = ROOT / "ui" / "session.py"
    app_cookie = re.search(r'REPLICA_COOKIE\s*=\s*"([^"]+)"', session.read_text() if session.exists() else "")
    if notes.get(NGINX + "session-cookie-name") in (None, app_cookie.group(1) if app_cookie else "torchlab_replica"):
        problems.append("the affinity cookie has no name of its own")
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        if int(notes.get(NGINX + timeout, 60)) < 3600:
            problems.append(f"{timeout} would cut a student's websocket")
    namespace, _, name = notes.get(NGINX + "custom-headers", "/").partition("/")
    headers = [c for c in of_kind(resources, "ConfigMap") if c["metadata"]["name"] == name]
    data = headers[0]["data"] if headers and headers[0]["metadata"]["namespace"] == namespace else {}
    if data.get("X-Frame-Options") not in ("DENY", "SAMEORIGIN") or "frame-ancestors" not in data.get(
        "Content-Security-Policy", ""
    ):
        problems.append("no X-Frame-Options and CSP frame-ancestors from the custom-headers ConfigMap")
    if any("snippet" in key for ingress in of_kind(resources, "Ingress") for key in ingress["metadata"].get("annotations", {})):
        problems.append("a configuration snippet: refused by current controllers")
    return problems


def test_the_edge_closes_only_what_the_streamlit_frontend_can_do_without() -> None:
    spec = importlib.util.find_spec("streamlit")
    assert spec is not None and spec.origin is not None
    frontend = Path(spec.origin).parent / "static"
    asked = {m.decode() for js in frontend.rglob("*.js") for m in re.findall(rb"_stcore/[a-z][a-z_-]*", js.read_bytes())}
    assert {"_stcore/stream", "_stcore/health", "_stcore/host-config"} <= asked
    routed = {u.strip("/") for u in STUDENT_URLS if u.startswith("/_stcore/")}
    new = asked - routed - UNUSED_BY_THIS_APP
    assert not new, f"Streamlit's frontend now asks for {new}: route it (ingress.yaml, STUDENT_URLS) or close it"


CHECKS = [
    namespace_problems,
    selector_problems,
    port_problems,
    probe_problems,
    resource_problems,
    secret_problems,
    security_problems,
    replicas_problems,
    routing_problems,
    edge_problems,
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__ for c in CHECKS])
def test_manifests_fit_together(check: Callable[[list[Resource]], list[str]]) -> None:
    assert check(load(applied_text())) == []


def part(resources: list[Resource], where: str, path: str) -> Any:
    """Return the node at a dotted path in resource "Kind" or "Kind/name"; "key=value" picks a list item."""
    kind, _, name = where.partition("/")
    node: Any = only(resources, kind, name or None)
    for step in path.split(".") if path else []:
        if isinstance(node, list):
            key, eq, value = step.partition("=")
            node = next(item for item in node if str(item.get(key)) == value) if eq else node[int(step)]
        else:
            node = node[step]
    return node


CONTAINER = "spec.template.spec.containers.0"
STREAM_PORT = "spec.rules.0.http.paths.path=/_stcore/stream.backend.service.port"

# Each breaks the real manifests the way a hurried edit would: (check, resource, path, {key: new value
# or None to delete}). The check passes on the real manifests and must notice the change.
BROKEN_FIT: dict[str, tuple[Callable[[list[Resource]], list[str]], str, str, dict[str, Any]]] = {
    "pod label renamed": (
        selector_problems,
        "Deployment",
        "spec.template.metadata.labels",
        {"app.kubernetes.io/component": "app"},
    ),
    "service targets a missing port": (port_problems, "Service/torchlab", "spec.ports.0", {"targetPort": "web"}),
    "ingress to a missing service port": (port_problems, "Ingress/torchlab", STREAM_PORT, {"name": "web"}),
    "probe on the app's root": (probe_problems, "Deployment", f"{CONTAINER}.readinessProbe.httpGet", {"path": "/"}),
    "impatient startup probe": (probe_problems, "Deployment", f"{CONTAINER}.startupProbe", {"failureThreshold": 3}),
    "threads above the CPU request": (
        resource_problems,
        "Deployment",
        f"{CONTAINER}.env.name=TORCHLAB_THREADS",
        {"value": "4"},
    ),
    "no memory limit": (resource_problems, "Deployment", f"{CONTAINER}.resources.limits", {"memory": None}),
    "secret key misspelt": (
        secret_problems,
        "Deployment",
        f"{CONTAINER}.env.name=TORCHLAB_COOKIE_SECRET.valueFrom.secretKeyRef",
        {"key": "cookie_secret"},
    ),
    "replica named after the node": (
        secret_problems,
        "Deployment",
        f"{CONTAINER}.env.name=TORCHLAB_REPLICA.valueFrom.fieldRef",
        {"fieldPath": "spec.nodeName"},
    ),
    "writable root filesystem": (
        security_problems,
        "Deployment",
        f"{CONTAINER}.securityContext",
        {"readOnlyRootFilesystem": False},
    ),
    "service links on": (security_problems, "Deployment", "spec.template.spec", {"enableServiceLinks": True}),
    "gate on a hostPath": (
        security_problems,
        "Deployment",
        "spec.template.spec.volumes.name=gate",
        {"emptyDir": None, "hostPath": {"path": "/run/torchlab"}},
    ),
    "one replica": (replicas_problems, "Deployment", "spec", {"replicas": 1}),
    "surge by taking one down": (replicas_problems, "Deployment", "spec.strategy.rollingUpdate", {"maxUnavailable": 1}),
    "wrong namespace": (namespace_problems, "PodDisruptionBudget", "metadata", {"namespace": "default"}),
    "metrics left open": (
        routing_problems,
        "Ingress/torchlab-internal",
        "spec.rules.0.http.paths.0",
        {"path": "/_stcore/agent"},
    ),
    "websocket path misspelt": (
        routing_problems,
        "Ingress/torchlab",
        "spec.rules.0.http.paths.path=/_stcore/stream",
        {"path": "/_stcore/streams"},
    ),
    "internal paths open to all": (
        routing_problems,
        "Ingress/torchlab-internal",
        "metadata.annotations",
        {NGINX + "whitelist-source-range": "0.0.0.0/0"},
    ),
    "closed service with pods": (
        routing_problems,
        "Service/torchlab-closed",
        "spec",
        {"selector": {"app.kubernetes.io/name": "torchlab"}},
    ),
    "no affinity": (edge_problems, "Ingress/torchlab", "metadata.annotations", {NGINX + "affinity": None}),
    "the app's cookie name": (
        edge_problems,
        "Ingress/torchlab",
        "metadata.annotations",
        {NGINX + "session-cookie-name": "torchlab_replica"},
    ),
    "default read timeout": (
        edge_problems,
        "Ingress/torchlab",
        "metadata.annotations",
        {NGINX + "proxy-read-timeout": "60"},
    ),
    "headers from a missing ConfigMap": (
        edge_problems,
        "ConfigMap/torchlab-security-headers",
        "metadata",
        {"name": "headers"},
    ),
}


@pytest.mark.parametrize("case", BROKEN_FIT.values(), ids=list(BROKEN_FIT))
def test_fit_checks_catch_a_broken_manifest(
    case: tuple[Callable[[list[Resource]], list[str]], str, str, dict[str, Any]],
) -> None:
    check, where, path, changes = case
    resources = load(applied_text())
    assert check(resources) == []
    node = part(resources, where, path)
    for key, value in changes.items():
        assert key in node or value is not None, f"{where} {path} has no {key}: update this test"
        if value is None:
            del node[key]
        else:
            node[key] = value
    assert check(resources) != []


# ------------------------------------------------------------------------------------------------
# The image


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: line number, keyword (upper case), arguments, heredoc body."""

    line: int
    keyword: str
    args: str
    heredoc: str = ""

    def exec_form(self) -> list[str]:
        """Return the JSON (exec form) arguments after any --flags, e.g. of CMD or HEALTHCHECK ... CMD."""
        start = self.args.find("[")
        assert start >= 0, f"line {self.line}: {self.keyword} is not in exec form"
        return list(json.loads(self.args[start:]))


def parse_dockerfile(text: str) -> list[Instruction]:
    """Return the instructions of a Dockerfile: continuations joined, comments dropped, heredocs kept."""
    lines = text.splitlines()
    out: list[Instruction] = []
    i = 0
    while i < len(lines):
        first, i = i, i + 1
        if not lines[first].strip() or lines[first].lstrip().startswith("#"):
            continue
        parts = [lines[first]]
        while parts[-1].rstrip().endswith("\\") and i < len(lines):
            if not lines[i].lstrip().startswith("#"):
                parts.append(lines[i])
            i += 1
        joined = " ".join(p.rstrip().removesuffix("\\").strip() for p in parts)
        keyword, _, args = joined.partition(" ")
        body: list[str] = []
        heredoc = re.search(r"<<-?\s*['\"]?(\w+)['\"]?", args)
        if heredoc:
            while i < len(lines) and lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
        out.append(Instruction(first + 1, keyword.upper(), args.strip(), "\n".join(body)))
    return out


@cache
def dockerfile() -> list[Instruction]:
    """Return deploy/Dockerfile's instructions."""
    return parse_dockerfile(DOCKERFILE.read_text())


def final_stage() -> list[Instruction]:
    """Return the instructions of the last stage, the image that runs."""
    instructions = dockerfile()
    last_from = max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    return instructions[last_from:]


def copies(stage: list[Instruction]) -> Iterator[tuple[str, str]]:
    """Yield (source, destination) of every COPY from the build context (not --from, not a heredoc)."""
    for ins in stage:
        if ins.keyword != "COPY" or ins.heredoc or "--from=" in ins.args:
            continue
        *sources, destination = [w for w in shlex.split(ins.args) if not w.startswith("--")]
        for source in sources:
            yield source, destination


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Return whether .dockerignore's patterns exclude this context path (last matching pattern wins)."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = re.escape(pattern.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        return re.compile(out.replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + "$")

    excluded = False
    candidates = [str(p) for p in [PurePosixPath(path), *PurePosixPath(path).parents] if str(p) != "."]
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.removeprefix("!")).match(c) for c in candidates):
            excluded = not negated
    return excluded


def dockerignore_patterns() -> list[str]:
    """Return .dockerignore's patterns."""
    return [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")]


def test_image_starts_from_the_base_build_arg_and_defaults_to_slim_python() -> None:
    instructions = dockerfile()
    first_from = next(i for i, ins in enumerate(instructions) if ins.keyword == "FROM")
    base = [ins.args for ins in instructions[:first_from] if ins.keyword == "ARG" and ins.args.startswith("BASE=")]
    assert len(base) == 1, "ARG BASE=... must come before the first FROM"
    version = re.fullmatch(r"BASE=python:3\.(\d+)-slim", base[0])
    assert version and int(version.group(1)) >= 11, base[0]
    stages = {}  # stage name -> what it starts from
    for ins in instructions:
        if ins.keyword == "FROM":
            image, _, name = ins.args.partition(" AS ")
            stages[name.strip() or image] = image.strip()
    stage = final_stage()[0].args.partition(" AS ")[0]
    while stage in stages and stages[stage] != stage:
        stage = stages[stage]
    assert stage == "${BASE}", "the running image does not derive from ${BASE}"


def test_image_installs_requirements_and_torch_from_the_cpu_index_by_default() -> None:
    instructions = dockerfile()
    index = [ins.args for ins in instructions if ins.keyword == "ARG" and ins.args.startswith("TORCH_INDEX_URL=")]
    assert index == ["TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu"]
    runs = " ".join(ins.args for ins in instructions if ins.keyword == "RUN")
    copied = {destination for source, destination in copies(instructions) if source == "requirements.txt"}
    assert any(f"pip install --no-cache-dir -r {d}" in runs for d in copied), "pip does not install requirements.txt"
    assert '--index-url "$TORCH_INDEX_URL"' in runs
    assert "grep -E '^torch==' /tmp/requirements.txt" in runs  # torch's version is requirements.txt's pin
    assert re.search(r"^torch==\d", (ROOT / "requirements.txt").read_text(), re.M)


def test_image_runs_as_the_same_non_root_user_as_the_pods() -> None:
    users = [ins.args for ins in final_stage() if ins.keyword == "USER"]
    assert users, "no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric uid (runAsNonRoot cannot check a name)"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    pod = only(load(applied_text()), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == int(uid)


def test_image_exposes_the_port_and_starts_streamlit_like_the_issue_says() -> None:
    stage = final_stage()
    assert [ins.args for ins in stage if ins.keyword == "EXPOSE"] == [str(PORT)]
    (cmd,) = [ins for ins in stage if ins.keyword == "CMD"]
    assert cmd.exec_form() == START_COMMAND
    (container,) = containers(load(applied_text()))
    assert [p["containerPort"] for p in container["ports"]] == [PORT]
    assert "command" not in container and "args" not in container  # the image's start command, unchanged


def test_image_healthcheck_asks_streamlit_health_with_python() -> None:
    (check,) = [ins for ins in final_stage() if ins.keyword == "HEALTHCHECK"]
    command = check.exec_form()
    assert command[0] == "python", "no curl or wget in the image: the check uses Python's urllib"
    assert f"http://127.0.0.1:{PORT}{HEALTH}" in command[-1]
    assert "--timeout=" in check.args and "--start-period=" in check.args


def test_image_copies_files_that_exist_and_that_dockerignore_lets_through() -> None:
    patterns = dockerignore_patterns()
    sources = [source for source, _ in copies(dockerfile())]
    assert sources, "the image copies nothing"
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
        assert not dockerignore_excludes(source.rstrip("/"), patterns), f"COPY {source}: .dockerignore excludes it"
        assert source not in (".", "./", ".streamlit", ".streamlit/"), f"COPY {source} would bring local secrets"
    for kept_out in (".git", ".venv", "tests", ".streamlit/secrets.toml", "core/__pycache__/x.pyc", "test-artifacts"):
        assert dockerignore_excludes(kept_out, patterns), f".dockerignore lets {kept_out} into the build context"


def test_image_copies_every_folder_the_app_runs_from() -> None:
    copied = {source.strip("/").split("/")[0] for source, _ in copies(final_stage())}
    code = {
        p.name
        for p in ROOT.iterdir()
        if not p.name.startswith(".")
        and ((p.is_file() and p.suffix == ".py") or (p.is_dir() and any(p.rglob("*.py"))))
        and not (p.is_dir() and (p / "pyvenv.cfg").exists())
    }
    missing = code - copied - DEV_ONLY
    assert not missing, f"{sorted(missing)}: copy into the image (deploy/Dockerfile, .dockerignore) or add to DEV_ONLY"
    assert "lessons" in copied  # prose and strings: data, no .py


def test_configuration_names_are_ones_the_app_reads() -> None:
    def names(text: str) -> set[str]:
        return set(re.findall(r"TORCHLAB_[A-Z][A-Z0-9_]*", text))

    app_code = [ROOT / "app.py", *(p for d in ("core", "classroom", "ui", "views") for p in (ROOT / d).rglob("*.py"))]
    read_by_app = set().union(*(names(p.read_text()) for p in app_code))
    (start,) = [ins for ins in final_stage() if ins.keyword == "COPY" and "torchlab-start" in ins.args]
    known = read_by_app | names(start.heredoc)
    documented = names(DOCKERFILE.read_text())
    (container,) = containers(load(applied_text()))
    set_by_pods = {n for n in env_of(container) if n.startswith("TORCHLAB_")}
    assert set_by_pods <= known, f"the Deployment sets {sorted(set_by_pods - known)}, which nothing reads (a typo?)"
    assert documented <= known, f"deploy/Dockerfile documents {sorted(documented - known)}, which nothing reads"
    assert read_by_app <= documented, f"document {sorted(read_by_app - documented)} in deploy/Dockerfile's header"


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs a POSIX shell")
@pytest.mark.parametrize(
    ("secret", "code", "streamlit_secret"),
    [
        (None, 0, None),
        ("0123456789abcdef" * 4, 0, "0123456789abcdef" * 4),
        ("too-short", 78, None),
        ("template", 78, None),
    ],
    ids=["unset", "real", "too short", "the template's placeholder"],
)
def test_start_wrapper_hands_the_cookie_secret_to_streamlit(
    secret: str | None, code: int, streamlit_secret: str | None, tmp_path: Path
) -> None:
    (start,) = [ins for ins in final_stage() if ins.keyword == "COPY" and "torchlab-start" in ins.args]
    assert [ins.exec_form() for ins in final_stage() if ins.keyword == "ENTRYPOINT"] == [["/usr/local/bin/torchlab-start"]]
    script = tmp_path / "torchlab-start"
    script.write_text(start.heredoc + "\n")
    script.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if secret is not None:
        env["TORCHLAB_COOKIE_SECRET"] = template_secret()["stringData"]["cookie-secret"] if secret == "template" else secret
    done = subprocess.run([str(script), "env"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == code, done.stderr
    got = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert got.get("STREAMLIT_SERVER_COOKIE_SECRET") == streamlit_secret


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    """Return hadolint's verdict on a Dockerfile (the linter comes from requirements-dev.txt)."""
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert binary, "hadolint is missing: pip install -r requirements-dev.txt"
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_dockerfile_passes_hadolint() -> None:
    verdict = hadolint(DOCKERFILE)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_hadolint_catches_a_root_image(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(DOCKERFILE.read_text().replace("USER 10001:10001", "USER root"))
    verdict = hadolint(broken)
    assert verdict.returncode != 0 and "DL3002" in verdict.stdout, verdict.stdout


def test_dockerfile_parser_sees_continuations_comments_and_heredocs() -> None:
    text = "ARG BASE=x\nFROM ${BASE} AS a\n# note\nRUN a \\\n    # inner comment\n    b\nCOPY <<'EOF' /f\nline\nEOF\nUSER 1\n"
    parsed = [(i.keyword, i.args, i.heredoc) for i in parse_dockerfile(text)]
    assert parsed == [
        ("ARG", "BASE=x", ""),
        ("FROM", "${BASE} AS a", ""),
        ("RUN", "a b", ""),
        ("COPY", "<<'EOF' /f", "line"),
        ("USER", "1", ""),
    ]


def test_dockerignore_matcher_follows_docker_rules() -> None:
    patterns = ["*", "!core/", "!.streamlit/config.toml", "**/__pycache__"]
    assert dockerignore_excludes("tests/x.py", patterns)
    assert not dockerignore_excludes("core/runner.py", patterns)
    assert dockerignore_excludes("core/__pycache__/runner.pyc", patterns)
    assert not dockerignore_excludes(".streamlit/config.toml", patterns)
    assert dockerignore_excludes(".streamlit/secrets.toml", patterns)
