"""`tinit export kubernetes`: the same services as objects Kubernetes accepts.

Every object is checked against the real Kubernetes JSON schemas (strict: no
unknown fields) by kubernetes-validate, without a cluster, and against the
apiserver's rules the schemas don't carry (which containers may have probes,
names, ports, the Deployment's selector).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import pwd
import re
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import trio
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.nsrun import ROOT, tinit_argv
from tinit.config import Config, HttpProbe, TcpProbe, load_config, parse_config
from tinit.convert import _k8s, _k8s_ports
from tinit.convert import kubernetes as export
from tinit.convert._k8s import (
    FOREVER,
    KINDS,
    Kind,
    Target,
    container_names,
    cpu_quantity,
    escape,
    memory_quantity,
)
from tinit.convert._k8s_ports import Port
from tinit.convert._k8s_vars import PLACEHOLDER, deferred_commands
from tinit.convert.kubernetes import export_kubernetes, parse_version, plain, to_yaml
from tinit.errors import ConfigError, UsageError
from tinit.probes import check_http, check_tcp

CONFIGS = sorted((ROOT / "configs").glob("*.yaml")) + sorted(
    (ROOT / "tests" / "configs" / "valid").glob("*.yaml")
)
# The schemas each export is checked against: for the default, a version with
# native sidecars and the newest the package ships; for --kubernetes-version
# 1.28, that one and the newest (a field the newest dropped would show).
LATEST = kubernetes_validate.utils.latest_version()
SCHEMAS = {None: ("1.30", LATEST), "1.28": ("1.28", LATEST)}
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root"}
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
IANA_SVC_NAME = re.compile(r"(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*")
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def load(tmp_path: Path, text: str, files: Mapping[str, str] | None = None) -> Config:
    """A config from ``text``, written with ``files`` beside it."""
    for name, content in (files or {}).items():
        (tmp_path / name).write_text(content)
    return parse_config(text, filename=str(tmp_path / "services.yaml"), environ=ENV, offline=True)


def export_objects(
    config: Config, kind: str = "deployment", **kwargs: Any
) -> tuple[str, dict[str, Any]]:
    text, _ = export_kubernetes(
        config, name="app", image="registry.example/app:1", kind=kind, **kwargs
    )
    return text, next(yaml.safe_load_all(text))


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj["spec"]
    return spec if obj["kind"] == "Pod" else spec["template"]["spec"]


def containers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every container of the pod by name, init containers first."""
    spec = pod_spec(obj)
    return {c["name"]: c for c in [*spec.get("initContainers", []), *spec["containers"]]}


def comment_notes(text: str) -> list[str]:
    """The `# tinit:` comments of ``text``, each joined back into one line."""
    notes: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# tinit: "):
            notes.append(stripped.removeprefix("# tinit: "))
        elif stripped.startswith("#   ") and notes:
            notes[-1] += " " + stripped.removeprefix("#   ")
    return notes


def comments_above(text: str, container: str) -> str:
    """The comment block right above the container's `- name:` line."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip() == f"- name: {container}")
    block: list[str] = []
    while lines[at - 1].lstrip().startswith("#"):
        at -= 1
        block.insert(0, lines[at].strip())
    return "\n".join(block)


def check_api_rules(obj: dict[str, Any], *, sidecars: bool = True) -> None:
    """The apiserver's checks that the JSON schemas don't express.

    Without ``sidecars`` (before 1.29, where the schema has the field but the
    feature is off), no init container may have a restartPolicy.
    """
    spec = pod_spec(obj)
    if obj["kind"] == "Deployment":
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert spec["restartPolicy"] == "Always"
    assert DNS_LABEL.fullmatch(obj["metadata"]["name"])
    assert spec["containers"], "a pod needs an app container"
    assert spec["terminationGracePeriodSeconds"] >= 0
    names = [c["name"] for c in [*spec.get("initContainers", []), *spec["containers"]]]
    assert len(names) == len(set(names))
    volumes = {v["name"] for v in spec.get("volumes", [])}
    for container in spec.get("initContainers", []):
        assert container.get("restartPolicy", "Always") == "Always"
        assert sidecars or "restartPolicy" not in container
        if "restartPolicy" not in container:  # a regular init container has no probes
            assert not set(PROBES) & container.keys()
    for container in spec["containers"]:
        assert "restartPolicy" not in container
    for name, container in containers(obj).items():
        assert DNS_LABEL.fullmatch(name) and len(name) <= 63
        assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes
        for env in container.get("env", []):
            assert re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", env["name"])
        resources = container.get("resources", {})
        assert resources.get("requests", {}) == resources.get("limits", {})
        for kind in PROBES:
            if kind not in container:
                continue
            probe = container[kind]
            handlers = {"exec", "httpGet", "tcpSocket", "grpc"} & probe.keys()
            assert len(handlers) == 1
            for field in ("periodSeconds", "timeoutSeconds", "failureThreshold"):
                assert 1 <= probe.get(field, 1) <= FOREVER
            for handler in ("httpGet", "tcpSocket"):
                if handler in probe:
                    assert 1 <= probe[handler]["port"] <= 65535
    ports = [p for c in containers(obj).values() for p in c.get("ports", [])]
    for key in ("name", "containerPort"):  # a pod's ports are distinct, and named once
        assert len({p[key] for p in ports}) == len(ports)
    for port in ports:
        assert IANA_SVC_NAME.fullmatch(port["name"]) and len(port["name"]) <= 15
        assert 1 <= port["containerPort"] <= 65535


def check_service(service: dict[str, Any], workload: dict[str, Any]) -> None:
    """A Service selects the workload's pods and targets its named container ports."""
    assert service["kind"] == "Service"
    assert service["metadata"]["name"] == workload["metadata"]["name"]
    template = workload if workload["kind"] == "Pod" else workload["spec"]["template"]
    labels = template["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    named = {p["name"] for c in containers(workload).values() for p in c.get("ports", [])}
    ports = service["spec"]["ports"]
    assert ports and {p["targetPort"] for p in ports} <= named
    assert len({p["name"] for p in ports}) == len(ports)
    assert all(DNS_LABEL.fullmatch(p["name"]) for p in ports)


# -- every config


@pytest.mark.parametrize("version", SCHEMAS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_config_exports_objects_kubernetes_accepts(
    path: Path, kind: Kind, version: str | None
) -> None:
    """Each shipped and valid test config gives objects the strict schemas accept."""
    config = load_config(str(path), offline=True)
    target = Target(
        "registry.example/app:1", kind, version=None if version is None else parse_version(version)
    )
    text, notes = export_kubernetes(config, name="app", target=target)
    obj, *rest = yaml.safe_load_all(text)
    for document in (obj, *rest):
        for schema in SCHEMAS[version]:
            kubernetes_validate.validate(document, desired_version=schema, strict=True)
    check_api_rules(obj, sidecars=version is None)
    enabled = [s for s in config.services.values() if not s.disabled]
    assert len(containers(obj)) == len(enabled or config.services)
    if rest:
        (service,) = rest
        check_service(service, obj)
    # every note is a comment too, with its key relative to its service
    prefixes = tuple(f"services.{name}." for name in config.services)
    relative = [next((n.removeprefix(p) for p in prefixes if n.startswith(p)), n) for n in notes]
    assert Counter(comment_notes(text)) == Counter(relative)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_the_yaml_reads_back_as_the_objects_built(path: Path) -> None:
    """The hand-written YAML parses back to exactly the tree the mapping built."""
    config = load_config(str(path), offline=True)
    documents, _ = _k8s.build(config, name="app", target=_k8s.Target("img"))
    for document in documents:
        assert yaml.safe_load(to_yaml(document, ["a comment"])) == plain(document)


# -- what maps to what

APP = """
version: 1
settings: {shutdown_timeout: 20s}
services:
  DB_main:
    command: [postgres, -D, /var/lib/pg]
    user: "999"
    group: "999"
    ready: {exec: "pg_isready -q", interval: 2s, timeout: 1s, start_timeout: 30s}
    health: {tcp: "127.0.0.1:5432", interval: 5s, failures: 4}
    stop_signal: SIGINT
    stop_timeout: 25s
  cache:
    command: [redis-server]
    ready: {tcp: "10.0.0.5:6379"}
  migrate:
    oneshot: true
    command: ./manage.py migrate
    depends_on: {DB_main: ready}
  seed:
    oneshot: true
    command: ./manage.py seed
    depends_on: {migrate: completed}
  web:
    command: echo $$(not a var) $$$$ done
    shell: true
    workdir: /srv
    env: {PORT: "8000", A: "$$(PORT)"}
    env_file: web.env
    depends_on: {seed: completed, cache: started}
    limits: {memory: 512M, cpu: 0.25}
    capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
    no_new_privs: true
    ready: {http: "http://localhost:8000/ready?full=1", interval: 3s, timeout: 2s, start_timeout: null}
    health: {http: "http://127.0.0.1:8000/health", interval: 10s, timeout: 3s, failures: 2}
"""
WEB_ENV = "# comment\nSECRET='s3 cret'\nexport PORT=1\n"


@pytest.fixture
def app(tmp_path: Path) -> tuple[str, dict[str, Any]]:
    return export_objects(load(tmp_path, APP, {"web.env": WEB_ENV}))


def test_oneshots_and_awaited_services_start_in_dependency_order(
    app: tuple[str, dict[str, Any]],
) -> None:
    """Services others wait for are sidecars, oneshots init containers, in order."""
    _, obj = app
    spec = pod_spec(obj)
    assert [c["name"] for c in spec["initContainers"]] == ["db-main", "cache", "migrate", "seed"]
    assert [c.get("restartPolicy") for c in spec["initContainers"]] == [
        "Always",
        "Always",
        None,
        None,
    ]
    assert [c["name"] for c in spec["containers"]] == ["web"]


def test_grace_period_is_the_longest_stop_timeout_or_shutdown_timeout(
    app: tuple[str, dict[str, Any]],
) -> None:
    """terminationGracePeriodSeconds: the larger of shutdown_timeout and every stop_timeout."""
    text, obj = app
    assert pod_spec(obj)["terminationGracePeriodSeconds"] == 25
    assert "settings.shutdown_timeout: 20s: raised to the longest stop_timeout" in text


def test_probes_map_with_their_timing(app: tuple[str, dict[str, Any]]) -> None:
    """ready -> readinessProbe (+ startupProbe for start_timeout), health -> livenessProbe."""
    _, obj = app
    db, cache, web = (containers(obj)[n] for n in ("db-main", "cache", "web"))
    exec_ = {"exec": {"command": ["pg_isready", "-q"]}, "periodSeconds": 2, "timeoutSeconds": 1}
    assert db["startupProbe"] == {**exec_, "failureThreshold": 15}  # 30s / 2s
    assert db["readinessProbe"] == exec_
    assert db["livenessProbe"] == {
        # loopback: the kubelet probes the pod's IP, so the check runs inside the container
        "exec": {"command": ["tinit", "probe", "tcp", "127.0.0.1:5432"]},
        "periodSeconds": 5,
        "timeoutSeconds": 2,
        "failureThreshold": 4,
    }
    assert cache["readinessProbe"]["tcpSocket"] == {"host": "10.0.0.5", "port": 6379}
    assert cache["startupProbe"]["failureThreshold"] == 60  # 60s at 500ms, rounded up to 1s
    assert "startupProbe" not in web  # start_timeout: null, and nothing waits for web
    assert web["readinessProbe"] == {
        "exec": {"command": ["tinit", "probe", "http", "http://localhost:8000/ready?full=1"]},
        "periodSeconds": 3,
        "timeoutSeconds": 2,
    }
    assert web["livenessProbe"] == {
        "exec": {"command": ["tinit", "probe", "http", "http://127.0.0.1:8000/health"]},
        "periodSeconds": 10,
        "timeoutSeconds": 3,
        "failureThreshold": 2,
    }


def test_process_settings_map_to_container_fields(app: tuple[str, dict[str, Any]]) -> None:
    """command, workdir, env (env_file then env), limits, user, capabilities."""
    _, obj = app
    db, web = containers(obj)["db-main"], containers(obj)["web"]
    assert web["command"] == ["/bin/sh", "-c", "echo $$(not a var) $$$ done"]
    assert web["workingDir"] == "/srv"
    assert web["env"] == [
        {"name": "SECRET", "value": "s3 cret"},
        {"name": "PORT", "value": "8000"},
        {"name": "A", "value": "$$(PORT)"},
    ]
    limits = {"memory": "512Mi", "cpu": "250m"}
    assert web["resources"] == {"limits": limits, "requests": limits}
    assert web["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
    }
    assert db["securityContext"] == {"runAsUser": 999, "runAsGroup": 999}
    assert all(c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}] for c in [db, web])
    assert pod_spec(obj)["volumes"] == [{"name": "tmp", "emptyDir": {}}]


def test_kubernetes_expands_commands_back_to_tinits(app: tuple[str, dict[str, Any]]) -> None:
    """After Kubernetes' $(VAR) expansion, the command and env are what tinit ran."""
    _, obj = app
    web = containers(obj)["web"]
    env = {e["name"]: k8s_expand(e["value"], {}) for e in web["env"]}
    assert k8s_expand(web["command"][2], env) == "echo $(not a var) $$ done"
    assert env["A"] == "$(PORT)"


def test_probes_on_every_address_stay_the_kubelets(tmp_path: Path) -> None:
    """A probe on 0.0.0.0 or :: says the service listens on the pod's address: no exec."""
    config = load(
        tmp_path,
        """
version: 1
services:
  a:
    command: [sleep, infinity]
    ready: {tcp: "0.0.0.0:6379"}
    health: {http: "http://[::]:8000/live?x=1"}
""",
    )
    text, obj = export_objects(config)
    a = containers(obj)["a"]
    assert a["readinessProbe"]["tcpSocket"] == {"port": 6379}
    assert a["livenessProbe"]["httpGet"] == {"path": "/live?x=1", "port": 8000}
    assert "tinit: ready.tcp" not in text and "tinit: health.http" not in text


def run_probe(command: list[str]) -> bool:
    """An exec probe's command run as the kubelet would: after $(VAR) expansion, bounded."""
    argv = [k8s_expand(arg, {}) for arg in command]
    assert argv[0] == "tinit"  # the image's tinit: this checkout's here
    done = subprocess.run(
        tinit_argv(*argv[1:]),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


def test_loopback_probes_inside_the_container_agree_with_tinits(tmp_path: Path) -> None:
    """The exec probes that replace loopback ones succeed and fail where tinit's do."""
    (tmp_path / "dir").mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler_class: Any = handler
    with (
        http.server.HTTPServer(("127.0.0.1", 0), handler_class) as server,
        socket.socket() as closed,
    ):
        closed.bind(("127.0.0.1", 0))  # bound, never listening: refuses connections
        up, down = server.server_address[1], closed.getsockname()[1]
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        verdicts = []
        try:
            cases = [("tcp", f"127.0.0.1:{up}"), ("tcp", f"localhost:{down}")] + [
                ("http", f"http://127.0.0.1:{up}{path}") for path in ("/", "/dir", "/missing")
            ]
            for kind, where in cases:
                config = load(
                    tmp_path,
                    f"version: 1\nservices:\n  a: {{command: [a], ready: {{{kind}: '{where}'}}}}\n",
                )
                probe = config.services["a"].ready
                assert probe is not None
                if isinstance(probe, TcpProbe):
                    tinit = trio.run(check_tcp, *probe.address, 5.0)
                else:
                    assert isinstance(probe, HttpProbe)
                    tinit = trio.run(check_http, probe.url, 5.0)
                _, obj = export_objects(config)
                command = containers(obj)["a"]["readinessProbe"]["exec"]["command"]
                assert command[:3] == ["tinit", "probe", kind]
                assert run_probe(command) is tinit, where
                verdicts.append(tinit)
        finally:
            server.shutdown()
            serving.join(timeout=10)
    # 200 and 301 (a directory without its slash) pass; a refused port and 404 fail
    assert verdicts == [True, False, True, True, False]


def test_probed_ports_are_container_ports_behind_a_service(tmp_path: Path) -> None:
    """Ports probed on loopback or every address are named containerPorts and a Service's."""
    config = load(tmp_path, APP, {"web.env": WEB_ENV})
    text, _ = export_kubernetes(config, name="app", image="img", kind="deployment")
    obj, service = yaml.safe_load_all(text)
    db, cache, web = (containers(obj)[n] for n in ("db-main", "cache", "web"))
    assert db["ports"] == [{"name": "db-main", "containerPort": 5432}]
    assert "ports" not in cache  # its probe checks another host
    assert web["ports"] == [{"name": "web", "containerPort": 8000}]  # ready and health: one
    assert service["spec"] == {
        "selector": {"app.kubernetes.io/name": "app"},
        "ports": [
            {"name": "db-main", "port": 5432, "targetPort": "db-main"},
            {"name": "web", "port": 8000, "targetPort": "web"},
        ],
    }
    assert "service.ports: db-main 5432, web 8000: probed on loopback only" in (
        " ".join(comment_notes(text))
    )
    target = Target("img", service=False)
    text, _ = export_kubernetes(config, name="app", target=target)
    (obj,) = yaml.safe_load_all(text)
    assert containers(obj)["web"]["ports"] == [{"name": "web", "containerPort": 8000}]


def test_port_names_are_short_distinct_and_valid() -> None:
    """A port takes its container's name if it can, else name-port, else port-N."""
    labels = {"a": "web", "b": "a-very-long-container-name", "c": "123", "d": "x--y"}
    probed = [
        ("a", "127.0.0.1", 80),
        ("a", "0.0.0.0", 80),  # the same port: once, and reachable from outside
        ("a", "::1", 81),
        ("b", "localhost", 8080),
        ("c", "0.0.0.0", 9000),
        ("d", "10.1.1.1", 7000),  # another host: not a port of this pod
        ("d", "::", 7001),
    ]
    assert _k8s_ports.name_ports(probed, labels) == [
        Port("a", "web", 80, loopback=False),
        Port("a", "web-81", 81, loopback=True),
        Port("b", "a-very-long-con", 8080, loopback=True),
        Port("c", "port-9000", 9000, loopback=False),
        Port("d", "x-y", 7001, loopback=False),
    ]


SIDECARS = """
version: 1
services:
  setup: {command: "true", oneshot: true}
  db: {command: [sleep, infinity], ready: {tcp: ":5432"}}
  migrate: {command: "true", oneshot: true, depends_on: {db: ready, setup: completed}}
  web: {command: [sleep, infinity], depends_on: {db: ready, migrate: completed}}
"""


@pytest.mark.parametrize("version", ["1.28", "v1.20"])
def test_before_1_29_dependencies_are_plain_containers(tmp_path: Path, version: str) -> None:
    """No native sidecars: long-running dependencies, and what waits for them, are containers."""
    config = load(tmp_path, SIDECARS)
    target = Target("img", "pod", version=parse_version(version))
    text, _ = export_kubernetes(config, name="app", target=target)
    obj = next(yaml.safe_load_all(text))
    spec = pod_spec(obj)
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [
        ("setup", None)
    ]
    assert [c["name"] for c in spec["containers"]] == ["db", "migrate", "web"]
    check_api_rules(obj, sidecars=False)
    kubernetes_validate.validate(obj, desired_version="1.28", strict=True)
    for name, dep in (("migrate", "db"), ("web", "db"), ("web", "migrate")):
        assert f"tinit: depends_on.{dep}: " in comments_above(text, name)
        assert "lost: Kubernetes before 1.29 has no native sidecars" in comments_above(text, name)
    assert "depends_on.setup" not in comments_above(text, "migrate")  # still an init container


@pytest.mark.parametrize("version", [None, "1.29", "1.36"])
def test_from_1_29_dependencies_are_native_sidecars(tmp_path: Path, version: str | None) -> None:
    config = load(tmp_path, SIDECARS)
    target = Target("img", "pod", version=None if version is None else parse_version(version))
    text, _ = export_kubernetes(config, name="app", target=target)
    spec = pod_spec(next(yaml.safe_load_all(text)))
    assert [(c["name"], c.get("restartPolicy")) for c in spec["initContainers"]] == [
        ("setup", None),
        ("db", "Always"),
        ("migrate", None),
    ]
    assert "lost" not in text


@pytest.mark.parametrize("text", ["1", "1.", "2.0", "1.x", "latest", "1.28.3", " 1.28"])
def test_a_bad_kubernetes_version_is_refused(text: str) -> None:
    with pytest.raises(UsageError, match="--kubernetes-version"):
        parse_version(text)


VARS = """
version: 1
services:
  x:
    command: [Xvfb, ":99", -screen, "0", "${W}x${H}x24", "$$(literal)", "$${HOME}", "$$${W}"]
  sh:
    command: echo "${GREETING}" $${HOME} $$(date) ${SET}
    shell: true
  plain: {command: [sleep, "${SET}"]}
"""


def load_vars(tmp_path: Path, text: str, environ: Mapping[str, str]) -> Config:
    return parse_config(text, filename=str(tmp_path / "s.yaml"), environ=environ, offline=True)


def test_a_variable_left_for_run_time_is_a_kubernetes_reference(tmp_path: Path) -> None:
    """${NAME} unset at export becomes $(NAME) with an env entry; Kubernetes then runs
    what tinit would have run with the same variables."""
    here = {**ENV, "SET": "5"}
    config = load_vars(tmp_path, VARS, here)
    deferred = deferred_commands(config, here, lambda env: load_vars(tmp_path, VARS, env))
    assert set(deferred) == {"x", "sh"}
    text, notes = export_kubernetes(config, name="app", target=Target("img", deferred=deferred))
    x, sh, plain_ = (containers(next(yaml.safe_load_all(text)))[n] for n in ("x", "sh", "plain"))
    assert x["command"][4:] == ["$(W)x$(H)x24", "$$(literal)", "${HOME}", "$$$(W)"]
    assert x["env"] == [{"name": "W", "value": PLACEHOLDER}, {"name": "H", "value": PLACEHOLDER}]
    assert sh["command"][2] == 'echo "$(GREETING)" ${HOME} $$(date) 5'
    assert plain_["command"] == ["sleep", "5"] and "env" not in plain_
    assert "command: ${W}, ${H}: not set where this was exported" in (
        " ".join(comment_notes(comments_above(text, "x")))
    )
    assert any(n.startswith("services.sh.command: ${GREETING}: ") for n in notes)
    # what tinit runs where the variables are set, Kubernetes runs with them in env
    there = {"W": "1280", "H": "720", "GREETING": "hi there"}
    at_run = load_vars(tmp_path, VARS, {**here, **there})
    for name, container in (("x", x), ("sh", sh)):
        env = {e["name"]: there[e["name"]] for e in container.get("env", [])}
        env.setdefault("GREETING", there["GREETING"])
        expanded = [k8s_expand(arg, env) for arg in container["command"]]
        assert tuple(expanded) == at_run.services[name].command, name


def test_a_variable_that_cant_be_placed_is_a_note(tmp_path: Path) -> None:
    """A name unset here but also read with a default elsewhere: the command stays, noted."""
    text = "version: 1\nservices:\n  a: {command: [sleep, '${T}'], stop_timeout: '${T:-3s}'}\n"
    config = load_vars(tmp_path, text, ENV)
    deferred = deferred_commands(config, ENV, lambda env: load_vars(tmp_path, text, env))
    assert deferred == {"a": None}
    out, notes = export_kubernetes(config, name="a", target=Target("img", deferred=deferred))
    assert containers(next(yaml.safe_load_all(out)))["a"]["command"] == ["sleep", "${T}"]
    assert any(
        n.startswith("services.a.command: holds a ${NAME} that tinit resolves") for n in notes
    )


def test_run_turns_a_variable_unset_here_into_a_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TINIT_TEST_WIDTH", raising=False)
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nservices:\n  a: {command: [Xvfb, '${TINIT_TEST_WIDTH}x24']}\n")
    assert export.run(parse(["kubernetes", str(path)])) == 0
    out, err = capsys.readouterr()
    a = containers(yaml.safe_load(out))["a"]
    assert a["command"] == ["Xvfb", "$(TINIT_TEST_WIDTH)x24"]
    assert a["env"] == [{"name": "TINIT_TEST_WIDTH", "value": PLACEHOLDER}]
    assert "can only be resolved at run time" in err


def test_notes_sit_above_the_container_they_concern(app: tuple[str, dict[str, Any]]) -> None:
    """Each container's notes are in the comment block right above it."""
    text, _ = app
    db = comments_above(text, "db-main")
    assert "tinit: name: 'DB_main' is not a DNS-1123 label, so the container is 'db-main'" in db
    assert "tinit: stop_signal: SIGINT" in db
    assert "tinit: health.tcp: 127.0.0.1:5432" in db
    web = comments_above(text, "web")
    assert "tinit: depends_on.cache: started:" in web
    assert "tinit: env_file:" in web and "web.env" in web
    assert "stop_signal" not in web


def test_pod_restart_policy_follows_the_app_containers(tmp_path: Path) -> None:
    """--kind pod takes the app containers' restart; a Deployment is always Always."""
    config = load(tmp_path, APP, {"web.env": WEB_ENV})
    _, obj = export_objects(config, "pod")
    assert obj["kind"] == "Pod" and pod_spec(obj)["restartPolicy"] == "OnFailure"
    text, obj = export_objects(config, "deployment")
    assert pod_spec(obj)["restartPolicy"] == "Always"
    assert "restart: on-failure has no equivalent here" in comments_above(text, "web")


def test_a_sidecar_waited_for_without_start_timeout_probes_forever(tmp_path: Path) -> None:
    """`start_timeout: null` on a sidecar others wait ready for: a startupProbe that never gives up."""
    config = load(
        tmp_path,
        """
version: 1
services:
  db: {command: [sleep, infinity], ready: {tcp: ":5432", start_timeout: null}}
  app: {command: [sleep, infinity], depends_on: {db: ready}}
""",
    )
    text, obj = export_objects(config)
    assert containers(obj)["db"]["startupProbe"]["failureThreshold"] == FOREVER
    assert "tinit: ready.start_timeout: null:" in comments_above(text, "db")


def test_a_notify_fd_dependency_holds_back_only_until_started(tmp_path: Path) -> None:
    """Kubernetes can't see notify_fd: dependents wait for the sidecar to start, and say so."""
    config = load(
        tmp_path,
        """
version: 1
services:
  n: {command: [sleep, infinity], ready: {notify_fd: 3}}
  a: {command: [sleep, infinity], depends_on: {n: ready}}
  b: {command: [sleep, infinity], depends_on: {n: started}}
""",
    )
    text, obj = export_objects(config)
    sidecar = containers(obj)["n"]
    assert sidecar["restartPolicy"] == "Always" and not set(PROBES) & sidecar.keys()
    assert "depends_on.n: ready: Kubernetes can't see n's notify_fd" in comments_above(text, "a")
    assert "depends_on" not in comments_above(text, "b")


def test_sd_notify_has_no_equivalent_and_says_so(tmp_path: Path) -> None:
    """No readiness probe, no watchdog: both are named, and a dependent waits for the start."""
    config = load(
        tmp_path,
        """
version: 1
services:
  db: {command: [sleep, infinity], ready: {sd_notify: true, watchdog: 30s}}
  web: {command: [sleep, infinity], depends_on: {db: ready}}
""",
    )
    text, obj = export_objects(config)
    sidecar = containers(obj)["db"]
    assert not set(PROBES) & sidecar.keys()
    above = comments_above(text, "db")
    assert "# tinit: ready.sd_notify: " in above
    assert "# tinit: ready.watchdog: 30s: dropped" in above
    assert "depends_on.db: ready: Kubernetes can't see db's sd_notify" in comments_above(
        text, "web"
    )


def test_a_config_of_oneshots_ends_with_an_app_container(tmp_path: Path) -> None:
    """A pod needs an app container: the last oneshot, which nothing waits for, is it."""
    config = load(
        tmp_path,
        """
version: 1
services:
  db: {command: [sleep, infinity], ready: {tcp: ":5432"}}
  first: {command: "true", oneshot: true}
  last: {command: "true", oneshot: true, depends_on: {db: ready}}
""",
    )
    text, obj = export_objects(config, "pod")
    spec = pod_spec(obj)
    assert [c["name"] for c in spec["initContainers"]] == ["db", "first"]
    assert [c["name"] for c in spec["containers"]] == ["last"]
    assert spec["restartPolicy"] == "Never"  # last's restart: a oneshot's default
    assert "nothing waits for it in tinit" in comments_above(text, "first")
    text, _ = export_objects(config, "deployment")
    assert "use --kind pod" in comments_above(text, "last")


def test_user_names_resolve_only_with_no_offline(tmp_path: Path) -> None:
    """A user name is a note offline; --no-offline takes the id from this machine."""
    config = load(
        tmp_path, "version: 1\nservices:\n  a: {command: [sleep, infinity], user: nobody}\n"
    )
    text, obj = export_objects(config)
    assert "securityContext" not in containers(obj)["a"]
    assert "tinit: user: 'nobody' is a name and Kubernetes needs a number" in text
    text, obj = export_objects(config, offline=False)
    uid = pwd.getpwnam("nobody").pw_uid
    assert containers(obj)["a"]["securityContext"] == {"runAsUser": uid}
    assert f"tinit: user: 'nobody' is {uid} on this machine" in text


UNMAPPABLE = """
version: 1
settings:
  health_listen: ":8089"
  forward_signals: [SIGUSR1]
  exit_code_remap: {143: 0}
services:
  app:
    command: [sleep, infinity]
    user: nobody
    umask: "027"
    stdin: /etc/hostname
    output: json
    clear_env: true
    restart: never
    success_exit_codes: [0, 2]
    backoff: {initial: 1s}
    max_restarts: 3
    critical: true
    ready: {notify_fd: 3}
    stop_signal: SIGINT
    limits: {pids: 100}
    oom_group: true
    capabilities: {add: [NET_ADMIN]}
    namespaces: {read_only_paths: [/, /etc], hidden_paths: [/root], network: none}
  side:
    command: [sleep, infinity]
    output: "file:/var/log/side.log"
    log_rotation: {max_size: 10M, keep: 3}
"""


def test_every_unmappable_key_is_named_in_a_comment(tmp_path: Path) -> None:
    """Keys Kubernetes can't express are comments near their container, and notes."""
    config = load(tmp_path, UNMAPPABLE)
    text, notes = export_kubernetes(config, name="app", image="img", kind="deployment")
    app = comments_above(text, "app")
    for key in (
        "user",
        "umask",
        "stdin",
        "output",
        "clear_env",
        "restart",
        "success_exit_codes",
        "backoff",
        "max_restarts",
        "critical",
        "ready.notify_fd",
        "stop_signal",
        "limits.pids",
        "oom_group",
        "capabilities.add",
        "namespaces.read_only_paths",
        "namespaces.hidden_paths",
        "namespaces.network",
    ):
        assert f"# tinit: {key}: " in app, key
        assert any(n.startswith(f"services.app.{key}: ") for n in notes), key
    assert "# tinit: output: file:/var/log/side.log" in comments_above(text, "side")
    assert "# tinit: log_rotation: {max_size: 10M, keep: 3}: no equivalent;" in comments_above(
        text, "side"
    )
    assert any(n.startswith("services.side.log_rotation: ") for n in notes)
    for key in ("health_listen", "forward_signals", "exit_code_remap"):
        assert f"# tinit: settings.{key}: " in text
        assert any(n.startswith(f"settings.{key}: ") for n in notes), key
    obj = yaml.safe_load(text)
    assert containers(obj)["app"]["securityContext"] == {
        "capabilities": {"add": ["NET_ADMIN"]},
        "readOnlyRootFilesystem": True,
    }
    kubernetes_validate.validate(obj, desired_version="1.30", strict=True)


def test_default_keys_that_match_kubernetes_get_no_note(tmp_path: Path) -> None:
    """A `restart: always` service stopped within shutdown_timeout exports with no note."""
    service = "{command: [a], restart: always, stop_timeout: 9s}"
    config = load(tmp_path, f"version: 1\nservices:\n  a: {service}\n")
    text, notes = export_kubernetes(config, name="a", image="img", kind="deployment")
    assert notes == [] and "# tinit:" not in text


# -- names, quantities, escaping


def test_container_names_are_distinct_dns_labels() -> None:
    """Valid names stay; others are lowercased, '-' for the rest, numbered on collision."""
    names = ["web", "Web", "web_1", "web-1", "a" * 70, "b.c", "_x_"]
    assert container_names(names) == {
        "web": "web",
        "Web": "web-2",
        "web_1": "web-1-2",
        "web-1": "web-1",
        "a" * 70: "a" * 63,
        "b.c": "b-c",
        "_x_": "x",
    }


def test_quantities() -> None:
    assert [memory_quantity(n) for n in (4096, 256 * 2**20, 2**30, 2**40, 5000)] == [
        "4Ki",
        "256Mi",
        "1Gi",
        "1Ti",
        "5000",
    ]
    assert [cpu_quantity(c) for c in (1, 1.5, 0.25, 0.0001, 2.0)] == [
        "1",
        "1500m",
        "250m",
        "1m",
        "2",
    ]


def k8s_expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion (third_party/forked/golang/expansion), byte by byte."""
    data, out, i = text.encode(), bytearray(), 0
    while i < len(data):
        if data[i] != ord("$") or i + 1 == len(data):
            out.append(data[i])
            i += 1
        elif data[i + 1] == ord("$"):
            out += b"$"
            i += 2
        elif data[i + 1] == ord("(") and (close := data.find(b")", i + 2)) != -1:
            name = data[i + 2 : close].decode()
            out += env.get(name, f"$({name})").encode()
            i = close + 1
        else:  # Go's string(byte): the next byte becomes a character of its own
            out += b"$" + chr(data[i + 1]).encode()
            i += 2
    return out.decode(errors="replace")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("$()ab é"), max_size=20) | st.text(max_size=20))
def test_escape_survives_kubernetes_expansion(text: str) -> None:
    """Whatever tinit ran, Kubernetes runs the same after expanding the escaped text."""
    assert k8s_expand(escape(text), {"a": "EXPANDED", "b": "X"}) == text


# -- the YAML writer


TRICKY = [
    "",
    " lead",
    "trail ",
    "yes",
    "No",
    "ON",
    "y",
    "n",
    "null",
    "~",
    "1e3",
    "0o14",
    "0x1F",
    "1_000",
    "12:30",
    ".inf",
    "2001-12-14",
    "- a",
    "a: b",
    "a #b",
    "#x",
    "&a",
    "*a",
    "!t",
    "%p",
    "@x",
    "`x",
    "{}",
    "[a]",
    "'q'",
    '"q"',
    "tab\there",
    "line\n",
    "two\nlines",
    "keep\n\n",
    "\nfirst empty",
    "  indented\nnext",
    "a\r\nb",
    "\u2028",
    "\x85x",
    "\ufeffbom",
    "snow ☃ 🙂",
    "#!/bin/sh\nset -e\n  # not a comment\n\nexit 0\n",
]


@pytest.mark.parametrize("text", TRICKY)
def test_strings_read_back_unchanged(text: str) -> None:
    """Every string is written in a form YAML reads back as the same string."""
    document = {"k": text, "l": [text, {"m": text, "n": [text]}], text or "e": 1}
    assert yaml.safe_load(to_yaml(document, ["c"])) == document


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "y", "n", "true", "null"])
def test_yaml_11_words_are_quoted(word: str) -> None:
    """Words some YAML parsers (go-yaml v2) read as booleans are always quoted."""
    assert f'k: "{word}"' in to_yaml({"k": word})


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_string_reads_back_unchanged(text: str) -> None:
    document = {"k": text, "l": [text, {"m": text}]}
    assert yaml.safe_load(to_yaml(document)) == document


def test_comments_wrap_and_stay_comments() -> None:
    """Long comments wrap under 100 columns; sequence items keep theirs above the dash."""
    long = "word " * 60
    document = {"a": _k8s.Commented([_k8s.Commented({"b": 1}, (long,))], ("top",))}
    text = to_yaml(document, [long])
    assert max(len(line) for line in text.splitlines()) <= 100
    assert yaml.safe_load(text) == {"a": [{"b": 1}]}
    assert text.splitlines()[-1] == "  - b: 1"


# -- the command


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="tinit")
    export.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["export", *argv])


def test_run_prints_a_deployment_named_after_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default name is the file's without extension, made a DNS label."""
    path = tmp_path / "My_App.yaml"
    path.write_text("version: 1\nservices:\n  a: {command: [sleep, infinity]}\n")
    assert export.run(parse(["kubernetes", str(path)])) == 0
    out, err = capsys.readouterr()
    obj = yaml.safe_load(out)
    assert (obj["kind"], obj["metadata"]["name"]) == ("Deployment", "my-app")
    assert containers(obj)["a"]["image"] == "REPLACE-ME:latest"
    assert "# image: REPLACE-ME:latest stands for the image tinit ran in" in out
    assert "see the '# tinit:' comments" in err  # restart: on-failure in a Deployment


def test_run_takes_kind_name_and_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.yaml"
    service = "{command: [sleep, infinity], restart: always, stop_timeout: 9s}"
    path.write_text(f"version: 1\nservices:\n  a: {service}\n")
    args = parse(["kubernetes", str(path), "--kind", "pod", "--name", "web", "--image", "x:1"])
    assert args.offline is True
    assert export.run(args) == 0
    out, err = capsys.readouterr()
    obj = yaml.safe_load(out)
    assert (obj["kind"], obj["metadata"]["name"], containers(obj)["a"]["image"]) == (
        "Pod",
        "web",
        "x:1",
    )
    assert err == ""
    assert parse(["kubernetes", str(path), "--no-offline"]).offline is False


def test_run_refuses_a_bad_name_and_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("version: 1\nservices:\n  a: {command: [sleep, infinity]}\n")
    with pytest.raises(UsageError, match="try 'web-1'"):
        export.run(parse(["kubernetes", str(path), "--name", "Web_1"]))
    path.write_text("version: 1\nservices:\n  a: {restart: sometimes}\n")
    with pytest.raises(ConfigError, match="restart"):
        export.run(parse(["kubernetes", str(path)]))
    with pytest.raises(SystemExit):
        parse(["yaml", str(path)])


def test_run_takes_a_kubernetes_version_and_no_service(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SIDECARS)
    assert export.run(parse(["kubernetes", str(path), "--kubernetes-version", "1.28"])) == 0
    obj, service = yaml.safe_load_all(capsys.readouterr().out)
    assert [c["name"] for c in pod_spec(obj)["initContainers"]] == ["setup"]
    assert service["spec"]["ports"] == [{"name": "db", "port": 5432, "targetPort": "db"}]
    assert export.run(parse(["kubernetes", str(path), "--no-service"])) == 0
    (obj,) = yaml.safe_load_all(capsys.readouterr().out)
    assert containers(obj)["db"]["restartPolicy"] == "Always"
    with pytest.raises(UsageError, match="not a Kubernetes version"):
        export.run(parse(["kubernetes", str(path), "--kubernetes-version", "28"]))


# -- the worked example of docs/kubernetes.md


def test_the_worked_example_is_the_real_output(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every line the doc shows (all but the trimmed ones) is in the output, in order."""
    monkeypatch.chdir(ROOT)
    config = load_config("configs/webapp-redis.yaml", offline=True)
    text, notes = export_kubernetes(
        config, name="webapp-redis", image="registry.example/shop:1.4", kind="deployment"
    )
    doc = (ROOT / "docs" / "kubernetes.md").read_text()
    example = doc.split("## A worked example", 1)[1]
    shown = example.split("```yaml\n", 1)[1].split("```", 1)[0].splitlines()
    lines = iter(text.splitlines())
    for line in shown:
        if "..." not in line:
            assert line in lines, line  # consumes the output up to the line
    assert f"tinit: {len(notes)} notes on what doesn't map exactly" in example


def test_the_worked_example_probes_work_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """redis listens on loopback only: its startupProbe, which holds web and worker back,
    must check from inside its container; so do web's, on loopback too."""
    monkeypatch.chdir(ROOT)
    config = load_config("configs/webapp-redis.yaml", offline=True)
    assert "127.0.0.1" in config.services["redis"].command  # --bind 127.0.0.1
    text, _ = export_kubernetes(config, name="webapp-redis", image="img", kind="deployment")
    obj, service = yaml.safe_load_all(text)
    redis, web = containers(obj)["redis"], containers(obj)["web"]
    assert redis["restartPolicy"] == "Always"
    assert redis["startupProbe"]["exec"]["command"] == ["tinit", "probe", "tcp", "127.0.0.1:6379"]
    for kind in PROBES:
        assert web[kind]["exec"]["command"] == ["tinit", "probe", "http", "http://127.0.0.1:8000/"]
    assert not any(
        {"tcpSocket", "httpGet"} & c.get(k, {}).keys() for c in (redis, web) for k in PROBES
    )
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["redis", "web"]


def test_replicas_are_containers_of_their_own_and_disabled_services_left_out(
    tmp_path: Path,
) -> None:
    """A Deployment's replicas copy the whole pod: each instance is a container, told its number;
    a disabled service is no container, and its dependents don't wait for it."""
    config = load(
        tmp_path,
        """
        version: 1
        services:
          worker: {command: ["sleep", "${TINIT_REPLICA}00"], replicas: 2}
          admin: {command: sleep infinity, disabled: true}
          web: {command: sleep infinity, depends_on: {admin: started}}
        """,
    )
    text, workload = export_objects(config)
    pod = workload["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"] + pod.get("initContainers", [])}
    assert sorted(containers) == ["web", "worker-1", "worker-2"]
    assert containers["worker-2"]["command"] == ["sleep", "200"]
    assert {"name": "TINIT_REPLICA", "value": "2"} in containers["worker-2"]["env"]
    assert workload["spec"]["replicas"] == 1
    assert "tinit: disabled: true: admin is left out" in text
    assert "instance 2 of worker: a container of its own" in text


def test_a_schedule_is_one_note_not_a_cronjob(tmp_path: Path) -> None:
    text = (
        "version: 1\nservices:\n"
        "  web: {command: [sleep, '600']}\n"
        "  backup: {command: [sleep, '1'], oneshot: true,"
        " schedule: {cron: '0 3 * * *', timezone: Europe/Paris}}\n"
    )
    out, notes = export_kubernetes(load(tmp_path, text), name="app", target=Target("img"))
    [note] = [n for n in notes if n.startswith("services.backup.schedule:")]
    assert "'0 3 * * *' in Europe/Paris" in note
    assert "CronJob is out of scope" in note
    assert [obj["kind"] for obj in yaml.safe_load_all(out) if obj] == ["Deployment"]
