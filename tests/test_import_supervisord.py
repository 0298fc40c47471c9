"""`tinit import supervisord`: a supervisord.conf becomes a services.yaml tinit accepts and runs.

The fixtures in tests/supervisord/ are written in the style of real Docker
images. Each converts, passes `tinit check --offline`, and notes exactly the
options that did not carry over; real supervisord (the Debian package's
Python module) reads each one the same way; three of them run under tinit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import pwd
import signal
import subprocess
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv
from tinit.cli import run_cli
from tinit.config import Config, LogRotation, parse_config
from tinit.convert import importing as importers
from tinit.convert._daemons import daemon_note
from tinit.convert.supervisord import ConversionError
from tinit.convert.supervisord import convert as convert_supervisord
from tinit.state import ExitStatus, decide

FIXTURES = ROOT / "tests" / "supervisord"
CONFS = sorted(FIXTURES.glob("*.conf"))
#: the environment the fixtures' %(ENV_X)s refer to, for tinit and supervisord alike
ENV = {
    "PATH": os.environ.get("PATH", os.defpath),
    "HOME": "/root",
    "PORT": "8000",
    "APP_ENV": "prod",
    "TINIT_TEST_COLOUR": "blue",
    "HOSTNAME": platform.node(),
}
SUPERVISOR_MODULE = Path("/usr/lib/python3/dist-packages/supervisor/options.py")
SYSTEM_PYTHON = "/usr/bin/python3"
needs_supervisor = pytest.mark.skipif(
    not (SUPERVISOR_MODULE.exists() and os.path.exists(SYSTEM_PYTHON)),
    reason="supervisord's Python module (Debian package 'supervisor') is not installed",
)

#: where the note that raised settings.shutdown_timeout points: the file as a whole
BUDGET = "(shutdown budget)"
# Where each fixture's notes point: "[section] option", or "[section]" for a whole section.
EXPECTED_NOTES: dict[str, set[str]] = {
    "control-servers.conf": {
        "[unix_http_server]",
        "[inet_http_server]",
        "[supervisord] identifier",
        "[rpcinterface:supervisor]",
        "[supervisorctl]",
        "[ctlplugin:serialrestart]",
        "[program:api] serverurl",
    },
    "cron-and-app.conf": {
        "[supervisord] childlogdir",
        "[program:app] stderr_logfile",
    },
    "debian-style.conf": {
        "[include] files",
        "[unix_http_server]",
        "[supervisord] logfile",
        "[supervisord] pidfile",
        "[supervisord] umask",
        "[supervisord] minfds",
        "[supervisord] minprocs",
        "[supervisord] childlogdir",
        "[supervisord] nocleanup",
        "[rpcinterface:supervisor]",
        "[supervisorctl]",
        "[program:app] command",
        "[program:app] environment",
        "[program:app] stdout_logfile",
        "[program:app] stderr_logfile",
    },
    "django-celery-redis.conf": {
        BUDGET,
        "[supervisord] logfile",
        "[program:gunicorn] startsecs",
        "[program:gunicorn] priority",
        "[program:celery-worker] priority",
        "[program:celery-beat] priority",
    },
    "env-expansion.conf": set(),
    "eventlistener.conf": {
        "[program:app] stdout_capture_maxbytes",
        "[program:app] stdout_events_enabled",
        "[program:app] stderr_events_enabled",
        "[eventlistener:stdout]",
        "[eventlistener:fatal-exit]",
        "[eventlistener:memmon]",
    },
    "groups.conf": {
        BUDGET,
        "[group:web]",
        "[group:workers]",
        "[group:workers] priority",
        "[program:app] priority",
        "[program:metrics] priority",
    },
    "include-confd.conf": {BUDGET, "[include] files"},
    "legacy-mistakes.conf": {
        "[supervisord] strip_ansi",
        "[program:web] autorestrat",
        "[program:web] start_secs",
        "[program:web] command",
        "[program:web] stopasgroup",
        "[program:web] killasgroup",
        "[program:report@daily] command",
        "[program:report@daily] process_name",
        "[fcgi-program:legacy-php]",
        "[program-settings]",
    },
    "logging-variants.conf": {
        "[program:half-quiet] stdout_logfile",
        "[program:split-files] stderr_logfile",
        "[program:to-syslog] stdout_syslog",
        "[program:to-syslog] stderr_syslog",
        "[program:relative-log] stderr_logfile",
        "[program:relative-log] stdout_logfile",
    },
    "nginx-php-fpm.conf": {
        BUDGET,
        "[supervisord] pidfile",
        "[unix_http_server]",
        "[rpcinterface:supervisor]",
        "[supervisorctl]",
        "[program:nginx] priority",
    },
    "numprocs-workers.conf": {"[program:worker] numprocs", "[program:worker] priority"},
    "oneshot-exitcodes.conf": {
        "[program:setup] autorestart",
        "[program:server] startsecs",
        "[program:server] priority",
        "[program:ticker] startsecs",
        "[program:ticker] priority",
    },
}
EXPECTED_SERVICES: dict[str, list[str]] = {
    "control-servers.conf": ["api", "watcher"],
    "cron-and-app.conf": ["cron", "app"],
    "debian-style.conf": ["sshd", "app"],
    "django-celery-redis.conf": ["redis", "gunicorn", "celery-worker", "celery-beat"],
    "env-expansion.conf": ["printer", "echoer"],
    "eventlistener.conf": ["app"],
    "groups.conf": ["app", "proxy", "mailer", "reports", "metrics"],
    "include-confd.conf": ["web", "worker"],
    "legacy-mistakes.conf": ["web", "report-daily"],
    "logging-variants.conf": [
        "quiet",
        "half-quiet",
        "split-files",
        "pid1-stdout",
        "to-syslog",
        "relative-log",
    ],
    "nginx-php-fpm.conf": ["php-fpm", "nginx"],
    "numprocs-workers.conf": ["queue", "worker-1", "worker-2", "worker-3"],
    "oneshot-exitcodes.conf": ["setup", "server", "ticker"],
}
#: supervisord's process names -> tinit's (numprocs became replicas: NAME-1..NAME-N)
RENAMED = {
    "report@daily": "report-daily",
    **{f"worker_0{n}": f"worker-{n}" for n in (1, 2, 3)},
}


def convert_file(path: Path) -> tuple[str, list[str]]:
    return convert_supervisord(path.read_text(), filename=str(path))


def check(document: str, directory: Path = FIXTURES) -> Config:
    """`tinit check --offline` of a converted document, as if saved next to the fixture."""
    return parse_config(
        document, filename=str(directory / "services.yaml"), environ=ENV, offline=True
    )


def where(note: str, path: Path) -> str:
    """The "[section] option" of a note, with the file named when it is another one."""
    file, place, _ = note.split(": ", 2)
    if place.startswith("stopping "):
        return BUDGET
    return place if file == str(path) else f"{os.path.relpath(file, path.parent)}: {place}"


def convert_text(
    tmp_path: Path, text: str, name: str = "supervisord.conf"
) -> tuple[str, list[str]]:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return convert_supervisord(path.read_text(), filename=str(path))


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConversionError) as caught:
        convert_text(tmp_path, text)
    return [str(p) for p in caught.value.problems]


# -- every fixture


def test_there_are_enough_varied_fixtures() -> None:
    """At least 12 supervisord.conf files, and every one has its expectations written down."""
    assert len(CONFS) >= 12
    assert {p.name for p in CONFS} == set(EXPECTED_NOTES) == set(EXPECTED_SERVICES)


@pytest.mark.parametrize("path", CONFS, ids=[p.name for p in CONFS])
def test_fixture_converts_to_a_config_that_passes_check(path: Path) -> None:
    """The output is a valid config: no errors from `tinit check --offline`, services in file order."""
    document, _ = convert_file(path)
    config = check(document)
    assert list(config.services) == EXPECTED_SERVICES[path.name]
    # shell syntax kept as supervisord's literal words is noted by the import and warned of by check
    expected = ("shutdown_timeout", "is shell syntax", "are shell syntax")
    assert all(not w.warning or any(e in w.message for e in expected) for w in config.warnings), [
        str(w) for w in config.warnings
    ]


@pytest.mark.parametrize("path", CONFS, ids=[p.name for p in CONFS])
def test_fixture_notes_name_exactly_what_did_not_carry_over(path: Path) -> None:
    """One note per option or section that has no one-to-one tinit equivalent, and no others."""
    document, notes = convert_file(path)
    assert {where(note, path) for note in notes} == EXPECTED_NOTES[path.name]
    assert len(notes) == len(set(notes))
    for note in notes:  # each note is also a comment at the top of the YAML
        place = where(note, path)
        if place == BUDGET:
            assert "# - stopping " in document
            continue
        assert f"# - {place}" in document or f"# - {note.split(': ', 1)[0]}" in document


@needs_supervisor
@pytest.mark.parametrize("path", CONFS, ids=[p.name for p in CONFS])
def test_real_supervisord_reads_each_fixture_as_tinit_runs_it(path: Path) -> None:
    """supervisord's own parser accepts the fixture and sees the same processes, commands,
    environments, directories, users, umasks, stop signals, exit codes and restart policies."""
    processes, supervisord_uid = supervisord_view(path)
    document, _ = convert_file(path)
    services = check(document).services
    assert sorted(RENAMED.get(p["name"], p["name"]) for p in processes) == sorted(services)
    for process in processes:
        service = services[RENAMED.get(process["name"], process["name"])]
        assert service.source_command == process["command"]
        assert dict(service.env) == process["environment"]
        assert service.workdir == process["directory"]
        uid = process["uid"] if process["uid"] is not None else supervisord_uid
        assert (pwd.getpwnam(service.user).pw_uid if service.user else None) == (uid or None)
        assert service.umask == process["umask"]
        assert service.stop_signal == process["stopsignal"]
        if process["stopwaitsecs"] != 10:
            assert service.stop_timeout == process["stopwaitsecs"]
        assert service.success_exit_codes == frozenset(process["exitcodes"])
        if not service.oneshot:
            assert service.restart == process["autorestart"]


SUPERVISORD_VIEW = """
import json, sys
from supervisor.options import ServerOptions
restart = {"RestartUnconditionally": "always", "RestartWhenExitUnexpected": "on-failure"}
options = ServerOptions()
options.realize(args=["-c", sys.argv[1]])
found = []
for group in options.process_group_configs:
    if type(group).__name__ != "ProcessGroupConfig":
        continue  # event listener pools and FastCGI programs are not converted
    for p in group.process_configs:
        found.append({
            "name": p.name, "command": p.command, "environment": p.environment,
            "directory": p.directory, "uid": p.uid, "umask": p.umask,
            "stopsignal": p.stopsignal, "stopwaitsecs": p.stopwaitsecs,
            "exitcodes": p.exitcodes,
            "autorestart": restart.get(getattr(p.autorestart, "__name__", ""), "never"),
        })
print(json.dumps({"processes": found, "uid": options.uid}))
"""


def supervisord_view(path: Path) -> tuple[list[dict[str, Any]], int | None]:
    result = subprocess.run(
        [SYSTEM_PYTHON, "-c", SUPERVISORD_VIEW, str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        cwd=path.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    view = json.loads(result.stdout)
    return view["processes"], view["uid"]


# -- they run


RUNNABLE = {
    "numprocs-workers.conf": [
        ("worker-1", "worker 1 of 3 up"),
        ("worker-2", "worker 2 of 3 up"),
        ("worker-3", "worker 3 of 3 up"),
        ("queue", "queue up"),
    ],
    "env-expansion.conf": [
        ("printer", "hello, world from printer in /srv/app, colour blue, 100%"),
        ("echoer", "echoer sees TEMPLATE=${HOME}/x PRICE=$5"),
    ],
    "oneshot-exitcodes.conf": [
        ("setup", "setup done"),
        ("server", "server listening"),
        ("ticker", "tick"),
    ],
}


def prefixed_lines(text: str) -> set[tuple[str, str]]:
    found = set()
    for line in text.splitlines():
        name, sep, body = line.partition(" | ")
        if sep:
            found.add((name.rstrip(), body))
    return found


@pytest.mark.parametrize("name", sorted(RUNNABLE))
def test_converted_fixture_runs_under_tinit_and_stops_cleanly(name: str, tmp_path: Path) -> None:
    """tinit as PID 1 runs the converted services (they print), and a SIGTERM ends it with 0."""
    document, _ = convert_file(FIXTURES / name)
    config = tmp_path / "services.yaml"
    config.write_text(document)
    out_path = tmp_path / "out"
    socket_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"tinit-import-{os.getpid()}-{name}"
    socket_dir.mkdir(exist_ok=True)
    with out_path.open("wb") as out:
        tinit = Tinit(
            "run",
            "--control-socket",
            str(socket_dir / "control.sock"),
            str(config),
            env={"TINIT_TEST_COLOUR": "blue"},
            stdout=out,
        )
        expected = set(RUNNABLE[name])
        deadline = time.monotonic() + 30
        while not expected <= prefixed_lines(out_path.read_text()):
            assert time.monotonic() < deadline, out_path.read_text()
            assert tinit.proc.poll() is None, out_path.read_text()
            time.sleep(0.05)
        tinit.signal(signal.SIGTERM)
        code, _, err = tinit.wait(30)
    assert code == 0, err
    socket_dir.joinpath("control.sock").unlink(missing_ok=True)
    socket_dir.rmdir()


# -- how options map


def test_command_stays_a_string_run_without_a_shell(tmp_path: Path) -> None:
    """supervisord splits the command and runs it without a shell; tinit's string command does the same."""
    document, notes = convert_text(
        tmp_path,
        """
        [program:app]
        command=/srv/app --name "two words" && echo $HOME
        """,
    )
    service = check(document, tmp_path).services["app"]
    assert service.command == ("/srv/app", "--name", "two words", "&&", "echo", "$HOME")
    assert not service.shell
    assert len(notes) == 1
    assert "[program:app] command: '&&' looks like shell syntax" in notes[0]
    assert "add shell: true" in notes[0]


def test_shell_syntax_inside_sh_c_is_not_noted(tmp_path: Path) -> None:
    """A command that already runs a shell has its shell syntax where it belongs."""
    document, notes = convert_text(
        tmp_path, "[program:app]\ncommand=sh -c 'cd /srv && exec app > /tmp/log 2>&1'\n"
    )
    assert notes == []
    assert check(document, tmp_path).services["app"].command[:2] == ("sh", "-c")


def test_expansions_known_now_are_written_out_and_env_ones_read_at_run(tmp_path: Path) -> None:
    """%(program_name)s and file-defined variables are substituted; %(ENV_X)s becomes ${X}."""
    document, _ = convert_text(
        tmp_path,
        """
        [supervisord]
        environment=BASE="/opt/base"

        [program:app]
        command=%(here)s/run %(program_name)s %(ENV_BASE)s %(ENV_OWN)s %(ENV_FROM_RUN)s 50%%
        environment=OWN="mine"
        """,
    )
    assert f"command: {tmp_path}/run app /opt/base mine ${{FROM_RUN}} 50%" in document
    config = parse_config(
        document, filename=str(tmp_path / "s.yaml"), environ={"FROM_RUN": "late"}, offline=True
    )
    assert config.services["app"].command[1:] == ("app", "/opt/base", "mine", "late", "50%")


def test_dollar_signs_keep_their_literal_meaning(tmp_path: Path) -> None:
    """supervisord has no ${} expansion: every $ in a value reaches the service as written."""
    document, _ = convert_text(
        tmp_path,
        """
        [program:app]
        command=/bin/echo ${NOT_EXPANDED} $$ $5 $%(ENV_X)s%(ENV_Y)s TINITVAR
        environment=A="${HOME}",B="$$$",C="a$",D="%(ENV_X)s$"
        """,
    )
    environ = {"X": "x", "Y": "y"}
    service = parse_config(
        document, filename=str(tmp_path / "s.yaml"), environ=environ, offline=True
    ).services["app"]
    assert service.command == ("/bin/echo", "${NOT_EXPANDED}", "$$", "$5", "$xy", "TINITVAR")
    assert dict(service.env) == {"A": "${HOME}", "B": "$$$", "C": "a$", "D": "x$"}


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ('A="1",B="2"', {"A": "1", "B": "2"}),
        ("A=1,B=2", {"A": "1", "B": "2"}),
        ('URL="postgres://u:p@h:5432/d",HOSTS="a.com,b.com"', None),
        ("PATH=/usr/bin:/bin,X='single quoted'", None),
        ('EMPTY="",Z=z', {"EMPTY": "", "Z": "z"}),
        ("A=1;B=2", None),  # supervisord skips whatever token stands between pairs
    ],
)
def test_environment_is_split_as_supervisord_splits_it(
    written: str, expected: dict[str, str] | None, tmp_path: Path
) -> None:
    """KEY=value pairs, quotes stripped, commas allowed inside quotes."""
    document, _ = convert_text(
        tmp_path, f"[program:app]\ncommand=/bin/true\nenvironment={written}\n"
    )
    env = dict(check(document, tmp_path).services["app"].env)
    if expected is not None:
        assert env == expected
    if SUPERVISOR_MODULE.exists():
        script = (
            "import json, sys\nfrom supervisor.datatypes import dict_of_key_value_pairs\n"
            "print(json.dumps(dict_of_key_value_pairs(sys.argv[1])))"
        )
        real = subprocess.run(
            [SYSTEM_PYTHON, "-c", script, written], capture_output=True, text=True, timeout=30
        )
        assert env == json.loads(real.stdout)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ("autorestart=true", {"restart": "always"}),
        ("autorestart=unexpected", {"restart": "on-failure"}),
        ("", {"restart": "on-failure", "max_restarts": 3, "reset_after": 1.0}),
        ("autorestart=false", {"restart": "never", "oneshot": False}),
        ("autorestart=false\nstartsecs=0", {"restart": "never", "oneshot": True}),
        ("startsecs=0", {"max_restarts": None}),
        ("startretries=7", {"max_restarts": 7, "reset_after": 1.0}),
        ("startsecs=15", {"max_restarts": 3, "reset_after": 15.0}),
        ("exitcodes=0,2,143", {"success_exit_codes": frozenset({0, 2, 143})}),
        ("stopsignal=QUIT\nstopwaitsecs=20", {"stop_signal": 3, "stop_timeout": 20.0}),
        ("stopsignal=9", {"stop_signal": 9}),
        ("umask=002", {"umask": 0o002}),
        ("directory=/srv\nuser=nobody", {"workdir": "/srv", "user": "nobody"}),
        ("redirect_stderr=true\nstdout_logfile=/dev/stdout", {"output": "prefix"}),
        ("stdout_logfile=/var/log/a.log\nredirect_stderr=true", {"output": "file:/var/log/a.log"}),
        ("stdout_logfile=NONE\nstderr_logfile=none", {"output": "null"}),
    ],
)
def test_program_options_map_to_service_keys(
    options: str, expected: dict[str, Any], tmp_path: Path
) -> None:
    """Each supervisord option that has a tinit key lands on it with the same meaning."""
    document, _ = convert_text(tmp_path, f"[program:app]\ncommand=/bin/true\n{options}\n")
    service = check(document, tmp_path).services["app"]
    for key, value in expected.items():
        actual = service.backoff.reset_after if key == "reset_after" else getattr(service, key)
        assert actual == value, key


def test_numprocs_expands_into_named_services(tmp_path: Path) -> None:
    """numprocs=N gives N services named by process_name, counting from numprocs_start."""
    document, _ = convert_text(
        tmp_path,
        """
        [program:w]
        command=/srv/work --slot %(process_num)d --of %(numprocs)d
        process_name=%(program_name)s-%(process_num)03d
        numprocs=2
        numprocs_start=7
        environment=SLOT="%(process_num)s"
        """,
    )
    services = check(document, tmp_path).services
    assert list(services) == ["w-007", "w-008"]
    assert services["w-008"].command == ("/srv/work", "--slot", "8", "--of", "2")
    assert services["w-008"].env["SLOT"] == "8"


def test_numprocs_counting_from_1_becomes_replicas_with_the_replica_number(
    tmp_path: Path,
) -> None:
    """Plain %(process_num)d from 1 is TINIT_REPLICA: one service with replicas, not N copies."""
    document, notes = convert_text(
        tmp_path,
        """
        [program:w]
        command=/srv/work --slot %(process_num)d --of %(numprocs)d
        process_name=%(program_name)s_%(process_num)02d
        numprocs=3
        numprocs_start=1
        environment=SLOT="%(process_num)s"
        autostart=false
        """,
    )
    assert "command: /srv/work --slot ${TINIT_REPLICA} --of 3" in document
    config = check(document, tmp_path)
    assert list(config.services) == ["w-1", "w-2", "w-3"]
    assert config.services["w-2"].command == ("/srv/work", "--slot", "2", "--of", "3")
    assert config.services["w-2"].env["SLOT"] == "2"
    assert all(s.disabled for s in config.services.values())
    assert [where(n, tmp_path / "supervisord.conf") for n in notes] == ["[program:w] numprocs"]
    assert "instances w-1 to w-3" in notes[0]


def test_numprocs_that_a_replica_number_cant_stand_for_stays_a_service_each(
    tmp_path: Path,
) -> None:
    """A padded number, or one from 7, stays N services, with a note that says why."""
    for options in ("numprocs_start=7\ncommand=/w %(process_num)d", "command=/w %(process_num)02d"):
        document, notes = convert_text(
            tmp_path, f"[program:w]\nprocess_name=w%(process_num)d\nnumprocs=2\n{options}\n"
        )
        assert "replicas" not in document.split("version: 1")[1]
        assert len(check(document, tmp_path).services) == 2
        assert any("stay a service each" in note and "command" in note for note in notes)


def test_priority_tiers_become_dependencies(tmp_path: Path) -> None:
    """Distinct priorities order start and stop through depends_on, each tier on the one below."""
    document, notes = convert_text(
        tmp_path,
        """
        [program:db]
        command=/bin/db
        priority=1
        [program:api]
        command=/bin/api
        priority=5
        [program:web]
        command=/bin/web
        priority=9
        [program:cron]
        command=/bin/cron
        priority=9
        """,
    )
    config = check(document, tmp_path)
    assert {name: dict(s.depends_on) for name, s in config.services.items()} == {
        "db": {},
        "api": {"db": "started"},
        "web": {"api": "started"},
        "cron": {"api": "started"},
    }
    assert sum("] priority: " in note for note in notes) == 3


def test_equal_priorities_give_no_dependencies(tmp_path: Path) -> None:
    """supervisord starts equal priorities together; so does tinit, with nothing to note."""
    document, notes = convert_text(
        tmp_path, "[program:a]\ncommand=/bin/a\n[program:b]\ncommand=/bin/b\npriority=999\n"
    )
    assert all(not s.depends_on for s in check(document, tmp_path).services.values())
    assert notes == []


def test_includes_are_found_relative_to_the_file_and_only_one_level_deep(tmp_path: Path) -> None:
    """[include] files= globs next to the main file; an included file's own [include] is not read."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "b.conf").write_text("[program:b]\ncommand=/bin/b\n")
    (tmp_path / "conf.d" / "a.conf").write_text(
        "[include]\nfiles=../deeper/*.conf\n[program:a]\ncommand=%(here)s/a\n"
    )
    (tmp_path / "deeper").mkdir()
    (tmp_path / "deeper" / "c.conf").write_text("[program:c]\ncommand=/bin/c\n")
    document, notes = convert_text(tmp_path, "[include]\nfiles = conf.d/*.conf\n")
    services = check(document, tmp_path).services
    assert list(services) == ["a", "b"]
    assert services["a"].command == (f"{tmp_path}/conf.d/a",)
    assert len(notes) == 1
    assert "conf.d/a.conf: [include]: an included file's [include] is not followed" in notes[0]
    assert "# (with conf.d/a.conf, conf.d/b.conf)" in document


def test_the_document_starts_with_its_source_and_notes_and_no_date(tmp_path: Path) -> None:
    """The header names the source file and lists the notes as comments; nothing changes by day."""
    document, notes = convert_text(
        tmp_path, "[program:app]\ncommand=/bin/app\nautostart=false\n", name="in.conf"
    )
    lines = document.splitlines()
    assert lines[0] == f"# Converted by `tinit import supervisord` from {tmp_path}/in.conf"
    assert "# - " not in document  # autostart=false is disabled: true, nothing to note
    assert "    disabled: true" in lines
    assert "version: 1" in lines
    assert not any(str(year) in document for year in range(2020, 2040))
    assert convert_text(
        tmp_path, "[program:app]\ncommand=/bin/app\nautostart=false\n", "in.conf"
    ) == (
        document,
        notes,
    )


def test_supervisord_section_sets_log_level_user_and_environment(tmp_path: Path) -> None:
    """loglevel maps to settings.log_level; user and environment reach every program."""
    document, notes = convert_text(
        tmp_path,
        """
        [supervisord]
        loglevel=debug
        user=nobody
        environment=SHARED="1",OVER="global"
        [program:a]
        command=/bin/a
        environment=OVER="own"
        [program:b]
        command=/bin/b
        user=www-data
        """,
    )
    config = check(document, tmp_path)
    assert config.settings.log_level == "debug"
    assert config.services["a"].user == "nobody"
    assert config.services["b"].user == "www-data"
    assert dict(config.services["a"].env) == {"SHARED": "1", "OVER": "own"}
    assert [where(n, tmp_path / "supervisord.conf") for n in notes] == ["[supervisord] user"]


# -- what supervisord refuses, tinit import refuses too


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[program:a]\nautorestart=true\n", "[program:a] command: is missing"),
        ("[program:a]\ncommand=/bin/a\nautorestart=maybe\n", "[program:a] autorestart: 'maybe'"),
        ("[program:a]\ncommand=/bin/a\nstopsignal=NOPE\n", "[program:a] stopsignal: 'NOPE'"),
        ("[program:a]\ncommand=/bin/a\nexitcodes=0,300\n", "[program:a] exitcodes: 300"),
        ("[program:a]\ncommand=/bin/a\nnumprocs=2\n", "[program:a] process_name: numprocs=2"),
        ("[program:a]\ncommand=/bin/a\nstopasgroup=true\nkillasgroup=false\n", "killasgroup"),
        ("[program:a]\ncommand=date +%Y\n", "write %% for a literal %"),
        ("[program:a]\ncommand=/bin/a %(nope)s\n", "%(nope)s names nothing supervisord knows"),
        ("[program:a]\ncommand=/bin/a 'open\n", "can't be split into words"),
        ("[program:a b]\ncommand=/bin/a\n", "can't be a name"),
        ("[program:a]\ncommand=/bin/a\nenvironment=A=1,B\n", "KEY=value pairs"),
        ("[program:a]\ncommand=/bin/a\nnumprocs=%(ENV_N)s\n", "needs a variable set at run time"),
        ("[group:g]\nprograms=ghost\n[program:a]\ncommand=/bin/a\n", "names 'ghost'"),
        ("[supervisord]\nnodaemon=true\n", "has no [program:x] with a process"),
        ("command=/bin/a\n", "comes before any [section] header"),
        ("[program:a]\ncommand=/bin/a\njunk line\n", "line 3: can't parse 'junk line'"),
        ("[include]\n[program:a]\ncommand=/bin/a\n", "[include]: has no files= option"),
    ],
)
def test_what_supervisord_refuses_is_a_problem(tmp_path: Path, text: str, expected: str) -> None:
    """A file supervisord would refuse is not converted; the problem names section and option."""
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found
    assert all(p.startswith(f"{tmp_path}/supervisord.conf: ") for p in found)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    """Three mistakes in three programs: three problems, one line each."""
    found = problems(
        tmp_path,
        """
        [program:a]
        command=/bin/a
        autorestart=sometimes
        [program:b]
        command=/bin/b
        startsecs=soon
        [program:c]
        stopwaitsecs=10
        """,
    )
    assert len(found) == 3
    assert all("\n" not in p for p in found)


# -- faithful by default


#: every file tinit import can be given here: the fixtures and the real files of public projects
#: (conf.d/ holds files that include-confd.conf pulls in, not files of their own)
ALL_CONFS = sorted(p for p in FIXTURES.rglob("*.conf") if "conf.d" not in p.parts)
#: the warnings of `tinit check` a file may keep, each with the words of the note that explains it
EXPLAINED_WARNINGS: dict[str, dict[str, str]] = {
    # supervisord, like tinit, runs no shell: the import keeps the words and says so
    "legacy-mistakes.conf": {"shell syntax, but no shell runs this": "looks like shell syntax"},
}


def test_the_real_files_are_there_and_name_their_source() -> None:
    """Real supervisord.conf files from public projects, each naming its project and license."""
    real = sorted((FIXTURES / "real").glob("*.conf"))
    assert len(real) >= 4
    for path in real:
        first = path.read_text().splitlines()[0]
        assert first.startswith("; From ") and "license" in path.read_text().split("[", 1)[0]


@pytest.mark.parametrize("path", ALL_CONFS, ids=[str(p.relative_to(FIXTURES)) for p in ALL_CONFS])
def test_every_imported_file_passes_tinit_check_without_a_warning_left_unexplained(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tinit import` then `tinit check --offline`: exit 0, and every warning explained on top."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(path.parent)
    out = tmp_path / "services.yaml"
    assert run_cli(["import", "supervisord", str(path), "-o", str(out)]) == 0
    capsys.readouterr()
    assert run_cli(["check", "--offline", str(out)]) == 0
    warnings = capsys.readouterr().err.splitlines()
    explained = EXPLAINED_WARNINGS.get(path.name, {})
    header = " ".join(line[4:] for line in out.read_text().splitlines() if line.startswith("# "))
    for warning in warnings:
        reason = next((why for what, why in explained.items() if what in warning), None)
        assert reason is not None, warning
        assert reason in header, warning


def test_a_long_stopwaitsecs_raises_the_shutdown_budget_and_says_what_else_to_raise(
    tmp_path: Path,
) -> None:
    """Laravel's stopwaitsecs=3600 gets the time to stop: in tinit, in Docker and in Kubernetes."""
    document, notes = convert_file(FIXTURES / "real" / "laravel-queue-worker.conf")
    config = check(document)
    assert len(config.services) == 8  # numprocs=8: replicas: 8
    assert "    replicas: 8" in document
    assert config.settings.shutdown_timeout >= 3600
    assert not config.warnings
    assert "settings.shutdown_timeout became 3601s" in notes[0]
    assert "docker stop -t 3602" in notes[0]
    assert "terminationGracePeriodSeconds: 3602" in notes[0]
    assert document.index("docker stop -t 3602") < document.index("version: 1")


def test_the_budget_covers_the_longest_chain_of_dependencies(tmp_path: Path) -> None:
    """Priorities stop one tier after another: their stop_timeouts add up along the chain."""
    document, notes = convert_text(
        tmp_path,
        """
        [program:db]
        command=/bin/db
        priority=1
        stopwaitsecs=30
        [program:api]
        command=/bin/api
        priority=5
        stopwaitsecs=20
        [program:side]
        command=/bin/side
        priority=5
        stopwaitsecs=2
        """,
    )
    config = check(document, tmp_path)
    assert config.settings.shutdown_timeout == 51
    assert notes[0].endswith("terminationGracePeriodSeconds: 52")
    assert "stopping api -> db can take 50s" in notes[0]


def test_a_file_that_stops_in_time_keeps_the_default_budget(tmp_path: Path) -> None:
    document, notes = convert_text(tmp_path, "[program:a]\ncommand=/bin/a\nstopwaitsecs=8\n")
    assert "shutdown_timeout" not in document
    assert check(document, tmp_path).settings.shutdown_timeout == 9
    assert notes == []


def restarts_until_given_up(service: Any, uptimes: list[float]) -> list[bool]:
    """tinit's restart decisions for runs that each fail after ``uptimes`` seconds."""
    failures, decisions = 0, []
    for uptime in uptimes:
        decision = decide(
            status=ExitStatus(code=1),
            policy=service.restart,
            success_codes=service.success_exit_codes,
            failures=failures,
            uptime=uptime,
            reset_after=service.backoff.reset_after,
            max_restarts=service.max_restarts,
            initial=service.backoff.initial,
            factor=service.backoff.factor,
            max_delay=service.backoff.max,
            jitter=0.0,
        )
        failures = decision.failures
        decisions.append(decision.restart)
    return decisions


def test_without_startsecs_and_startretries_tinit_restarts_as_supervisord_does(
    tmp_path: Path,
) -> None:
    """supervisord: runs of 1 s or more are restarted forever; 3 quick failures in a row are retried,
    the 4th gives up (FATAL). The converted service decides the same, except that the exit of a
    long run counts as the first failure of a new series, where supervisord counts only starts."""
    document, notes = convert_text(tmp_path, "[program:a]\ncommand=/bin/a\nautorestart=true\n")
    assert notes == []
    service = check(document, tmp_path).services["a"]
    assert restarts_until_given_up(service, [5.0] * 50) == [True] * 50
    assert restarts_until_given_up(service, [0.2] * 4) == [True, True, True, False]
    after_a_long_run = [0.2, 0.2, 0.2, 1.5, 0.2, 0.2, 0.2]
    assert restarts_until_given_up(service, after_a_long_run) == [True] * 6 + [False]


@pytest.mark.parametrize(
    ("command", "foreground"),
    [
        ("/usr/sbin/nginx", "nginx -g 'daemon off;'"),
        ("php-fpm8.2", "php-fpm -F"),
        ("/usr/sbin/sshd", "sshd -D"),
        ("apachectl start", "apachectl -D FOREGROUND"),
        ("/usr/sbin/httpd", "httpd -DFOREGROUND"),
        ("redis-server /etc/redis.conf --daemonize yes", "redis-server --daemonize no"),
        ("cron", "cron -f"),
        ("service mysql start", "in the foreground"),
        ("/etc/init.d/apache2 start", "in the foreground"),
        ("gunicorn --daemon app:app", "gunicorn without -D/--daemon"),
        ("/opt/app/bin/server --daemonize", "drop the flag"),
        ("gosu www-data nginx", "nginx -g 'daemon off;'"),
        ("bash -c 'service nginx start && tail -f /var/log/nginx/access.log'", "in the foreground"),
        ("sh -c 'worker & sleep 5'", "tinit watches only the shell"),
        ("docker run -d --name web nginx", "docker run without -d"),
    ],
)
def test_a_command_that_daemonizes_is_noted_with_its_foreground_form(
    command: str, foreground: str, tmp_path: Path
) -> None:
    _, notes = convert_text(tmp_path, f"[program:d]\ncommand={command}\n")
    [note] = [n for n in notes if "[program:d] command:" in n]
    assert foreground in note


@pytest.mark.parametrize(
    "command",
    [
        "nginx -g 'daemon off;'",
        "php-fpm -F",
        "php-fpm7.3 --nodaemonize",
        "/usr/sbin/sshd -D -e",
        "apache2ctl -D FOREGROUND",
        "httpd -DFOREGROUND",
        "redis-server --daemonize no",
        "cron -f -l",
        "crond -f -L 15",
        "sh -c 'cd /srv && exec app > /tmp/log 2>&1'",
        "python3 app.py --daemon=false",
        "x11vnc -display :1 -forever",
        "service --status-all",
    ],
)
def test_a_foreground_command_is_not_noted(command: str) -> None:
    import shlex

    assert daemon_note(shlex.split(command)) is None


# -- the migration guide


GUIDE = ROOT / "docs" / "migrating.md"


def test_the_guides_supervisord_example_is_what_the_import_prints() -> None:
    """The before/after example in docs/migrating.md is the converter's real output."""
    text = GUIDE.read_text()
    before = text.split("A typical PHP image:\n\n```ini\n", 1)[1].split("```", 1)[0]
    after = text.split("becomes\n\n```yaml\n", 1)[1].split("```", 1)[0]
    assert convert_supervisord(before, filename="supervisord.conf")[0] == after


def test_every_config_in_the_guide_passes_check() -> None:
    """Each complete services.yaml shown in docs/migrating.md is valid."""
    blocks = [
        block.split("```", 1)[0]
        for block in GUIDE.read_text().split("```yaml\n")[1:]
        if "version: 1" in block.split("```", 1)[0]
    ]
    assert len(blocks) >= 3
    for block in blocks:
        check(block)


# -- the command line


def namespace(file: Path, output: Path | None = None) -> argparse.Namespace:
    return argparse.Namespace(
        command="import", format="supervisord", file=str(file), output=output and str(output)
    )


def test_add_parser_takes_format_file_and_output() -> None:
    """`tinit import supervisord FILE -o PATH` parses; other formats are refused by argparse."""
    parser = argparse.ArgumentParser()
    importers.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["import", "supervisord", "in.conf", "-o", "out.yaml"])
    assert (args.command, args.format, args.file, args.output) == (
        "import",
        "supervisord",
        "in.conf",
        "out.yaml",
    )
    assert parser.parse_args(["import", "supervisord", "in.conf"]).output is None
    with pytest.raises(SystemExit):
        parser.parse_args(["import", "s6", "in.conf"])


def test_run_prints_the_yaml_and_the_notes_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """YAML on stdout, one `tinit import: FILE: [section] option: note` line per note on stderr."""
    path = FIXTURES / "nginx-php-fpm.conf"
    assert importers.run(namespace(path)) == 0
    out, err = capsys.readouterr()
    assert out == convert_file(path)[0]
    lines = err.splitlines()
    assert len(lines) == len(EXPECTED_NOTES[path.name])
    assert f"tinit import: {path}: [program:nginx] priority: 10 comes after 5" in err
    assert all(line.startswith(f"tinit import: {path}: ") for line in lines)


def test_run_writes_the_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-o PATH gets the YAML; stdout stays empty."""
    out_file = tmp_path / "services.yaml"
    path = FIXTURES / "oneshot-exitcodes.conf"
    assert importers.run(namespace(path, out_file)) == 0
    assert capsys.readouterr().out == ""
    assert out_file.read_text() == convert_file(path)[0]


def test_run_refuses_an_unreadable_or_invalid_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit code 2 and one clear line per problem; nothing on stdout."""
    missing = tmp_path / "missing.conf"
    assert importers.run(namespace(missing)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"tinit import: {missing}: can't read it: No such file or directory\n"
    bad = tmp_path / "bad.conf"
    bad.write_text("[program:a]\ncommand=/bin/a\nautorestart=maybe\nstopsignal=NOPE\n")
    assert importers.run(namespace(bad)) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"tinit import: {bad}: [program:a] autorestart: 'maybe' is not true, false or unexpected",
        f"tinit import: {bad}: [program:a] stopsignal: 'NOPE' is not a signal name",
    ]


def test_python_m_tinit_import_supervisord(tmp_path: Path) -> None:
    """The command line has the subcommand: `python -m tinit import supervisord FILE`."""
    path = FIXTURES / "groups.conf"
    result = subprocess.run(
        tinit_argv("import", "supervisord", str(path)),
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == convert_file(path)[0]
    assert len(result.stderr.splitlines()) == len(EXPECTED_NOTES[path.name])
    again = subprocess.run(
        tinit_argv("check", "--offline", "/dev/stdin"),
        input=result.stdout,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert again.returncode == 0, again.stderr


def test_log_file_rotation_carries_over_with_supervisords_defaults(tmp_path: Path) -> None:
    """maxbytes and backups become log_rotation; what tinit can't do the same is noted."""
    document, notes = convert_text(
        tmp_path,
        """
        [program:plain]
        command=/bin/true
        redirect_stderr=true
        stdout_logfile=/var/log/plain.log
        [program:off]
        command=/bin/true
        redirect_stderr=true
        stdout_logfile=/var/log/off.log
        stdout_logfile_maxbytes=0
        [program:tiny]
        command=/bin/true
        redirect_stderr=true
        stdout_logfile=/var/log/tiny.log
        stdout_logfile_maxbytes=1KB
        stdout_logfile_backups=0
        [program:both]
        command=/bin/true
        stdout_logfile=/var/log/both.log
        stderr_logfile=/var/log/both.log
        stdout_logfile_maxbytes=1MB
        stderr_logfile_maxbytes=2MB
        """,
    )
    services = check(document, tmp_path).services
    rotation = {name: s.log_rotation for name, s in services.items()}
    assert rotation == {
        "plain": LogRotation(max_size=50 << 20, keep=10),
        "off": None,
        "tiny": LogRotation(max_size=4096, keep=1),
        "both": LogRotation(max_size=1 << 20, keep=10),
    }
    assert {where(note, tmp_path / "supervisord.conf") for note in notes} == {
        "[program:tiny] stdout_logfile_maxbytes",
        "[program:tiny] stdout_logfile_backups",
        "[program:both] stderr_logfile_maxbytes",
    }
