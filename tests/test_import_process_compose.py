"""`tinit import process-compose`: a process-compose.yaml becomes a services.yaml tinit accepts.

The fixtures in tests/process_compose/ are real files of public projects, each
naming its source. Each converts, passes `tinit check --offline` with no
warning, and notes exactly the keys that did not carry over; the mapping of
each key, the problems that stop a conversion and the command line are
tested on small files of their own.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv
from tinit.cli import run_cli
from tinit.config import Config, ExecProbe, HttpProbe, LogRotation, TcpProbe, parse_config
from tinit.convert import MAX_BYTES, import_file
from tinit.convert import importing as importers
from tinit.convert._render import ConversionError
from tinit.convert.process_compose import convert

FIXTURES = ROOT / "tests" / "process_compose"
FILES = sorted(FIXTURES.glob("*.yaml"))
BUDGET = "(shutdown budget)"
VARIABLES = "(variables)"
# Where each fixture's notes point: the key, or one of the two notes about the file as a whole.
EXPECTED_NOTES: dict[str, set[str]] = {
    "data-aggregation-workflow.yaml": {BUDGET, VARIABLES, "log_location"},
    "devbox-mysql.yaml": {BUDGET, "processes.mysql.shutdown.command"},
    "devbox-php-fpm.yaml": {"processes.php-fpm.command"},
    "devbox-postgresql.yaml": {"processes.postgresql.shutdown.command"},
    "izanami.yaml": {
        BUDGET,
        "processes.Containers.readiness_probe.initial_delay_seconds",
        "processes.Containers.readiness_probe.failure_threshold",
        "processes.Containers.shutdown.command",
        "processes.Backend.is_tty",
        "processes.Backend.readiness_probe.initial_delay_seconds",
        "processes.Backend.readiness_probe.failure_threshold",
    },
    "osrd.yaml": {VARIABLES},
    "ppa-django-solr.yaml": {
        "processes.solr.readiness_probe.initial_delay_seconds",
        "processes.solr.readiness_probe.failure_threshold",
        "processes.solr.shutdown.command",
    },
    "process-compose-own.yaml": {
        BUDGET,
        "log_length",
        "log_configuration",
        "log_location",
        "processes.process1.shutdown.command",
        "processes.process1.depends_on.process3",
        "processes._process2",
        "processes._process2.readiness_probe.http_get.scheme",
        "processes._process2.readiness_probe.initial_delay_seconds",
        "processes._process2.readiness_probe.failure_threshold",
        "processes._process2.shutdown.command",
        "processes._process2.log_location",
        "processes.process3.depends_on.nginx",
        "processes.process4.disable_ansi_colors",
        "processes.process4.readiness_probe.initial_delay_seconds",
        "processes.process4.readiness_probe.failure_threshold",
        "processes.process5.disable_ansi_colors",
        "processes.process5.namespace",
        "processes.process5.readiness_probe.initial_delay_seconds",
        "processes.process5.readiness_probe.failure_threshold",
        "processes.server.is_tty",
        "processes.server.command",
        "processes.server.readiness_probe.http_get",
        "processes.__pc_log",
        "processes.__pc_log.namespace",
        "processes.__pc_log_client",
        "processes.__pc_log_client.namespace",
    },
}
#: the warnings of `tinit check` a file may keep, each with the words of the note that explains it
EXPLAINED_WARNINGS: dict[str, dict[str, str]] = {}


def where(note: str) -> str:
    _, place, _ = note.split(": ", 2)
    if place.startswith("stopping "):
        return BUDGET
    if place.startswith("process-compose expands variables"):
        return VARIABLES
    return place


def convert_text(tmp_path: Path, text: str) -> tuple[str, list[str]]:
    path = tmp_path / "process-compose.yaml"
    path.write_text(textwrap.dedent(text))
    return convert(path.read_text(), filename=str(path))


def check(document: str, directory: Path) -> Config:
    """`tinit check --offline` of a converted document, saved in ``directory``."""
    return parse_config(
        document, filename=str(directory / "services.yaml"), environ={}, offline=True
    )


def service(tmp_path: Path, text: str, name: str = "app") -> Any:
    document, _ = convert_text(tmp_path, text)
    return check(document, tmp_path).services[name]


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConversionError) as caught:
        convert_text(tmp_path, text)
    return [str(p).split(": ", 1)[1] for p in caught.value.problems]


# -- the real files


def test_the_real_files_are_there_and_name_their_source() -> None:
    assert len(FILES) >= 6
    assert {p.name for p in FILES} == set(EXPECTED_NOTES)
    for path in FILES:
        first = path.read_text().splitlines()[0]
        assert (
            first.startswith("# From ") and "license" in path.read_text().split("\nversion", 1)[0]
        )


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_file_converts_and_passes_tinit_check_without_a_warning_left_unexplained(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tinit import process-compose` then `tinit check --offline`: exit 0, warnings explained."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "services.yaml"
    assert run_cli(["import", "process-compose", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert run_cli(["check", "--offline", str(out)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    explained = EXPLAINED_WARNINGS.get(path.name, {})
    header = " ".join(line[4:] for line in out.read_text().splitlines() if line.startswith("# "))
    for warning in warnings:
        reason = next((why for what, why in explained.items() if what in warning), None)
        assert reason is not None, warning
        assert reason in header, warning


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_each_file_notes_exactly_what_did_not_carry_over(path: Path) -> None:
    document, notes = convert(path.read_text(), filename=str(path))
    assert {where(note) for note in notes} == EXPECTED_NOTES[path.name]
    assert len(notes) == len(set(notes))
    header = document.split("\nversion: 1\n", 1)[0]
    for note in notes:
        assert note.split(": ", 1)[1][:40] in header.replace("\n#   ", " ").replace("\n# - ", "\n")


def test_the_projects_services_keep_their_dependencies_and_probes(tmp_path: Path) -> None:
    """Izanami: each part waits for the one before to answer its health URL."""
    document, _ = convert((FIXTURES / "izanami.yaml").read_text(), filename="izanami.yaml")
    config = check(document, tmp_path)
    assert {name: dict(s.depends_on) for name, s in config.services.items()} == {
        "Containers": {},
        "Backend": {"Containers": "ready"},
        "Frontend": {"Backend": "ready"},
    }
    assert dict(config.services["Frontend"].depends_on) == {"Backend": "ready"}
    backend = config.services["Backend"]
    assert backend.ready is not None and backend.ready.interval == 1 and backend.ready.timeout == 5
    assert all(s.restart == "never" for s in config.services.values())


RUNNABLE = """
version: "0.5"
environment: [GREETING=hello]
processes:
  setup:
    command: "echo setup done for $GREETING && exit 0"
  app:
    command: "echo app sees ${GREETING:-nobody} in ${PLACE}; exec sleep 1000"
    environment: [PLACE=the container]
    depends_on:
      setup: {condition: process_completed_successfully}
    availability: {restart: on_failure}
    shutdown: {signal: 15, timeout_seconds: 3}
"""


def test_a_converted_file_runs_under_tinit_and_stops_cleanly(tmp_path: Path) -> None:
    """tinit as PID 1 runs the converted file: the setup task first, then the app, whose shell
    reads the variables process-compose would have put in; a SIGTERM ends it with 0."""
    document, _ = convert_text(tmp_path, RUNNABLE)
    config = tmp_path / "services.yaml"
    config.write_text(document)
    out_path = tmp_path / "out"
    socket = Path(os.environ.get("TMPDIR", "/tmp")) / f"tinit-pc-{os.getpid()}.sock"
    expected = {"setup | setup done for hello", "app   | app sees hello in the container"}
    with out_path.open("wb") as out:
        tinit = Tinit("run", "--control-socket", str(socket), str(config), stdout=out)
        deadline = time.monotonic() + 30
        while not expected <= set(out_path.read_text().splitlines()):
            assert time.monotonic() < deadline, out_path.read_text()
            assert tinit.proc.poll() is None, out_path.read_text()
            time.sleep(0.05)
        tinit.signal(signal.SIGTERM)
        code, _, err = tinit.wait(30)
    socket.unlink(missing_ok=True)
    assert code == 0, err
    lines = out_path.read_text().splitlines()
    assert lines.index("setup | setup done for hello") < lines.index(
        "app   | app sees hello in the container"
    )


# -- how keys map


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("redis-server --port 6380", ("redis-server", "--port", "6380")),
        ("./api --name 'my api'", ("./api", "--name", "my api")),
        ("cd /srv && exec ./api", ("/bin/sh", "-c", "cd /srv && exec ./api")),
        ("PORT=1 ./api", ("/bin/sh", "-c", "PORT=1 ./api")),
        ("./api --port ${PORT:-80}", ("/bin/sh", "-c", "./api --port ${PORT:-80}")),
        ("echo one\necho two\n", ("/bin/sh", "-c", "echo one\necho two\n")),
        ("[[ -f x ]] && ./api", ("bash", "-c", "[[ -f x ]] && ./api")),
    ],
)
def test_a_command_runs_with_a_shell_only_when_it_needs_one(
    command: str, expected: tuple[str, ...], tmp_path: Path
) -> None:
    """process-compose runs every command with bash -c; tinit needs a shell only for shell syntax,
    and leaves the command's variables to that shell, as it reads them when the service runs."""
    text = f"processes:\n  app:\n    command: {json.dumps(command)}\n"
    assert service(tmp_path, text).command == expected


def test_an_entrypoint_is_the_exact_argv(tmp_path: Path) -> None:
    """process-compose runs an entrypoint without a shell; 0 stays among the success codes."""
    text = """
    processes:
      app: {entrypoint: [/bin/app, --port, "8080"], success_exit_codes: [3]}
    """
    app = service(tmp_path, text)
    assert app.command == ("/bin/app", "--port", "8080")
    assert app.success_exit_codes == frozenset({0, 3})


def test_a_command_wins_over_an_entrypoint(tmp_path: Path) -> None:
    """As in process-compose, which warns and runs the command."""
    text = "processes:\n  app: {entrypoint: [/bin/other], command: /bin/app --x}\n"
    document, notes = convert_text(tmp_path, text)
    assert check(document, tmp_path).services["app"].command == ("/bin/app", "--x")
    assert any("processes.app.entrypoint: ignored" in note for note in notes)


def test_x_keys_are_left_alone_and_env_file_carries_over(tmp_path: Path) -> None:
    text = """
    x-common: {anything: 1}
    processes:
      app: {command: /bin/app, env_file: /dev/null, x-note: kept out}
    """
    document, notes = convert_text(tmp_path, text)
    assert notes == []
    assert check(document, tmp_path).services["app"].env_file == ("/dev/null",)


def test_the_files_own_shell_runs_the_commands(tmp_path: Path) -> None:
    text = """
    shell: {shell_command: zsh, shell_argument: -c}
    processes:
      app: {command: "print -l $path | head"}
    """
    assert service(tmp_path, text).command == ("zsh", "-c", "print -l $path | head")


@pytest.mark.parametrize(
    ("condition", "expected", "noted"),
    [
        ("process_started", "started", False),
        ("process_healthy", "ready", False),
        ("process_completed_successfully", "completed", False),
        ("process_completed", "completed", True),
        ("process_log_ready", "started", True),
    ],
)
def test_depends_on_conditions_become_tinit_conditions(
    condition: str, expected: str, noted: bool, tmp_path: Path
) -> None:
    text = f"""
    processes:
      dep:
        command: /bin/dep
        readiness_probe: {{exec: {{command: /bin/probe}}}}
      app:
        command: /bin/app
        depends_on: {{dep: {{condition: {condition}}}}}
    """
    document, notes = convert_text(tmp_path, text)
    config = check(document, tmp_path)
    assert dict(config.services["app"].depends_on) == {"dep": expected}
    assert config.services["dep"].oneshot == (expected == "completed")
    assert any("processes.app.depends_on.dep" in note for note in notes) == noted


def test_waiting_for_health_without_a_probe_is_waiting_for_the_start(tmp_path: Path) -> None:
    """tinit would only warn; the import says it and writes what tinit will do."""
    text = """
    processes:
      dep: {command: /bin/dep}
      app:
        command: /bin/app
        depends_on: {dep: {condition: process_healthy}}
    """
    document, notes = convert_text(tmp_path, text)
    assert dict(check(document, tmp_path).services["app"].depends_on) == {"dep": "started"}
    assert any("dep has no readiness probe" in note for note in notes)


def test_probes_become_ready_and_health(tmp_path: Path) -> None:
    text = """
    processes:
      app:
        command: /bin/app
        readiness_probe:
          http_get: {host: 127.0.0.1, port: 8080, path: /ready}
          period_seconds: 2
          timeout_seconds: 3
        liveness_probe:
          exec: {command: "curl -fs localhost:8080/live || exit 1"}
          period_seconds: 30
          failure_threshold: 5
    """
    app = service(tmp_path, text)
    assert isinstance(app.ready, HttpProbe) and app.ready.url == "http://127.0.0.1:8080/ready"
    assert (app.ready.interval, app.ready.timeout) == (2, 3)
    assert isinstance(app.health, ExecProbe)
    assert app.health.argv == ("sh", "-c", "curl -fs localhost:8080/live || exit 1")
    assert (app.health.interval, app.health.failures) == (30, 5)


def test_an_https_probe_becomes_a_tcp_connect(tmp_path: Path) -> None:
    text = """
    processes:
      app:
        command: /bin/app
        readiness_probe: {http_get: {host: example.org, scheme: https}}
    """
    document, notes = convert_text(tmp_path, text)
    ready = check(document, tmp_path).services["app"].ready
    assert isinstance(ready, TcpProbe) and ready.address == ("example.org", 443)
    assert any("speaks plain HTTP only" in note for note in notes)


@pytest.mark.parametrize(
    ("availability", "expected"),
    [
        ("{}", {"restart": "never", "critical": False}),
        ("{restart: no}", {"restart": "never"}),
        ("{restart: always}", {"restart": "always", "max_restarts": None}),
        ("{restart: on_failure, max_restarts: 4}", {"restart": "on-failure", "max_restarts": 4}),
        ("{restart: exit_on_failure}", {"restart": "never", "critical": True}),
        ("{restart: always, exit_on_end: true}", {"restart": "always", "critical": True}),
        ("{restart: always, backoff_seconds: 3}", {"backoff": (3.0, 3.0, 1.0)}),
        ("{restart: always, backoff_seconds: 0}", {"backoff": (0.0, 30.0, 1.0)}),
    ],
)
def test_availability_becomes_restart_keys(
    availability: str, expected: dict[str, Any], tmp_path: Path
) -> None:
    app = service(
        tmp_path, f"processes:\n  app:\n    command: /bin/app\n    availability: {availability}\n"
    )
    for key, value in expected.items():
        if key == "backoff":
            assert (app.backoff.initial, app.backoff.max, app.backoff.factor) == value
        else:
            assert getattr(app, key) == value, key


def test_shutdown_environment_workdir_and_log(tmp_path: Path) -> None:
    text = """
    environment: [SHARED=1, LEVEL=info]
    processes:
      app:
        command: /bin/app
        working_dir: /srv
        environment: [LEVEL=debug, "URL=http://$HOST:${PORT}/x"]
        shutdown: {signal: 2, timeout_seconds: 20}
        log_location: logs/app.log
    """
    document, notes = convert_text(tmp_path, text)
    app = check(document, tmp_path).services["app"]
    assert app.stop_signal == 2 and app.stop_timeout == 20
    assert app.workdir == "/srv"
    assert dict(app.env) == {"SHARED": "1", "LEVEL": "debug", "URL": "http://:/x"}
    assert "${HOST:-}" in document and "${PORT:-}" in document
    assert app.output == f"file:{tmp_path}/logs/app.log"
    assert any("HOST, PORT" in note for note in notes)
    assert check(document, tmp_path).settings.shutdown_timeout == 21


def test_disable_env_expansion_keeps_every_dollar(tmp_path: Path) -> None:
    text = """
    disable_env_expansion: true
    processes:
      app: {command: /bin/app, environment: ["PRICE=$5", "T=${X}"]}
    """
    assert dict(service(tmp_path, text).env) == {"PRICE": "$5", "T": "${X}"}


def test_names_tinit_cant_use_are_renamed_and_dependencies_follow(tmp_path: Path) -> None:
    text = """
    processes:
      _db: {command: /bin/db}
      "my app":
        command: /bin/app
        depends_on: {_db: {condition: process_started}}
    """
    document, notes = convert_text(tmp_path, text)
    config = check(document, tmp_path)
    assert list(config.services) == ["db", "my-app"]
    assert dict(config.services["my-app"].depends_on) == {"db": "started"}
    assert sum("renamed" in note for note in notes) == 2


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("is_daemon", "true", "foreground"),
        ("replicas", "3", "TINIT_REPLICA counts from 1 where PC_REPLICA_NUM counts from 0"),
        ("namespace", "web", "namespaces"),
        ("vars", "{PORT: 80}", "not evaluated"),
        ("extends", "base", "not followed"),
        ("ready_log_line", "ready", "can't wait for a line"),
        ("frobnicate", "1", "unknown key"),
    ],
)
def test_keys_without_an_equivalent_are_noted(
    key: str, value: str, words: str, tmp_path: Path
) -> None:
    text = f"processes:\n  app:\n    command: /bin/app\n    {key}: {value}\n"
    document, notes = convert_text(tmp_path, text)
    [note] = [n for n in notes if f"processes.app.{key}:" in n]
    assert words in note
    check(document, tmp_path)


def test_disabled_and_replicas_become_the_keys(tmp_path: Path) -> None:
    text = """
    processes:
      worker: {command: /bin/work, replicas: 3}
      admin: {command: /bin/admin, disabled: true}
      web: {command: /bin/web, depends_on: {worker: {condition: process_started}}}
    """
    document, notes = convert_text(tmp_path, text)
    config = check(document, tmp_path)
    assert list(config.services) == ["worker-1", "worker-2", "worker-3", "admin", "web"]
    assert config.services["admin"].disabled
    assert not config.services["worker-2"].disabled
    assert dict(config.services["web"].depends_on) == {f"worker-{n}": "started" for n in (1, 2, 3)}
    assert [n for n in notes if "processes.admin" in n] == []
    assert any("processes.worker.replicas: instances are worker-1 to worker-3" in n for n in notes)


@pytest.mark.parametrize(("value", "words"), [("0", "not between 1 and 100"), ("x", "whole")])
def test_replicas_tinit_cant_run_are_refused(value: str, words: str, tmp_path: Path) -> None:
    text = f"processes:\n  app:\n    command: /bin/app\n    replicas: {value}\n"
    with pytest.raises(ConversionError) as caught:
        convert_text(tmp_path, text)
    assert any(words in str(p) for p in caught.value.problems)


@pytest.mark.parametrize(
    ("raw", "schedule", "run_at_start"),
    [
        ("{cron: '0 2 * * *', timezone: Europe/Paris}", ("0 2 * * *", "Europe/Paris"), False),
        ("{cron: '*/5 * * * *', interval: 1h}", ("*/5 * * * *", None), False),
        ("{interval: 1h30m, run_on_start: true}", ("@every 90m", None), True),
        ("{interval: 2.5s}", ("@every 2500ms", None), False),
    ],
)
def test_a_schedule_becomes_a_scheduled_oneshot(
    raw: str, schedule: tuple[str, str | None], run_at_start: bool, tmp_path: Path
) -> None:
    text = f"processes:\n  job:\n    command: /bin/job\n    schedule: {raw}\n"
    document, _ = convert_text(tmp_path, text)
    job = check(document, tmp_path).services["job"]
    assert job.oneshot
    assert job.schedule is not None
    assert (job.schedule.expression, job.schedule.timezone) == schedule
    assert job.run_at_start is run_at_start


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("{interval: 500ms}", "shorter than tinit's least"),
        ("{interval: soon}", "not a duration"),
        ("{timezone: UTC}", "neither cron nor interval"),
    ],
)
def test_a_schedule_tinit_cant_run_is_a_problem(raw: str, words: str, tmp_path: Path) -> None:
    text = f"processes:\n  job:\n    command: /bin/job\n    schedule: {raw}\n"
    with pytest.raises(ConversionError) as caught:
        convert_text(tmp_path, text)
    assert words in str(caught.value)


def test_a_command_that_daemonizes_is_noted(tmp_path: Path) -> None:
    _, notes = convert_text(tmp_path, "processes:\n  web: {command: nginx}\n")
    assert any("nginx -g 'daemon off;'" in note for note in notes)


# -- what process-compose would refuse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("processes: [a, b]\n", "has no processes: mapping"),
        ("version: '0.5'\n", "has no processes: mapping"),
        ("- a\n- b\n", "is not a process-compose file"),
        ("processes:\n  a: {command: x\n", "line 3: not valid YAML: expected ',' or '}'"),
        ("processes:\n  a: {}\n", "processes.a.command: is missing"),
        ("processes:\n  a: {command: x, availability: {restart: sometimes}}\n", "'sometimes'"),
        ("processes:\n  a: {command: x, shutdown: {signal: 99}}\n", "99 is not a signal"),
        ("processes:\n  a: {command: x, environment: [NOEQUALS]}\n", "'NOEQUALS' is not KEY=value"),
        (
            "processes:\n  a: {command: x, depends_on: {b: {condition: process_ok}}}\n  b: {command: y}\n",
            "condition 'process_ok' is not one of",
        ),
        (
            "processes:\n  a: {command: x, depends_on: {b: {}}}\n  b: {command: y, depends_on: {a: {}}}\n",
            "dependency cycle: a -> b -> a",
        ),
    ],
)
def test_what_process_compose_refuses_is_a_problem(
    tmp_path: Path, text: str, expected: str
) -> None:
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert expected in found[0]


def test_a_file_over_the_size_limit_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("processes:\n" + "#" * MAX_BYTES)
    with pytest.raises(ConversionError, match="larger than 1024 KiB"):
        import_file("process-compose", str(path))


# -- the command line


def test_help_lists_the_format() -> None:
    result = subprocess.run(
        tinit_argv("import", "--help"), capture_output=True, text=True, timeout=30, cwd=ROOT
    )
    assert result.returncode == 0
    assert "process-compose" in result.stdout and "process-compose.yaml" in result.stdout


def test_a_malformed_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("processes:\n  a: [unclosed\n")
    args = argparse.Namespace(format="process-compose", file=str(bad), output=None)
    assert importers.run(args) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith(f"tinit import: {bad}: line ")
    assert "Traceback" not in err


# -- the migration guide

GUIDE = ROOT / "docs" / "migrating.md"


def test_the_guides_process_compose_example_is_what_the_import_prints() -> None:
    section = GUIDE.read_text().split("## From process-compose", 1)[1]
    before = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    after = section.split("becomes\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert convert(before, filename="process-compose.yaml")[0] == after


def test_yaml_aliases_that_multiply_a_value_stay_short_in_messages(tmp_path: Path) -> None:
    """A few lines of aliases make a list of millions of items: a message names it, never prints it."""
    levels = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for previous, name in zip("abcdefg", "bcdefgh", strict=True):
        levels.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    text = "\n".join([*levels, "processes:", "  p: {command: *h, environment: *h}", ""])
    found = problems(tmp_path, text)
    assert found == [
        "processes.p.command: is missing or empty; process-compose refuses that too",
        "processes.p.environment: a list is not KEY=value",
    ]


def test_log_rotation_of_a_log_location_carries_over(tmp_path: Path) -> None:
    text = """
    processes:
      sized:
        command: /bin/app
        log_location: /var/log/sized.log
        log_configuration: {rotation: {max_size_mb: 5, max_backups: 3}}
      defaults:
        command: /bin/app
        log_location: /var/log/defaults.log
        log_configuration:
          rotation: {max_age_days: 7, compress: true}
          add_timestamp: true
      nowhere:
        command: /bin/app
        log_configuration: {rotation: {max_size_mb: 1}}
    """
    document, notes = convert_text(tmp_path, text)
    services = check(document, tmp_path).services
    assert {name: s.log_rotation for name, s in services.items()} == {
        "sized": LogRotation(max_size=5 << 20, keep=3),
        "defaults": LogRotation(max_size=100 << 20, keep=1000),
        "nowhere": None,
    }
    assert sorted(where(note) for note in notes) == [
        "processes.defaults.log_configuration.add_timestamp",
        "processes.defaults.log_configuration.rotation.compress",
        "processes.defaults.log_configuration.rotation.max_age_days",
        "processes.defaults.log_configuration.rotation.max_backups",
        "processes.nowhere.log_configuration.rotation",
    ]
