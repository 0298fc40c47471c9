"""The config loader: what `tinit check` accepts, what it reports, and where."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tinit.config import (
    Backoff,
    Config,
    ExecProbe,
    LogRotation,
    TcpProbe,
    load_config,
    parse_config,
    parse_duration,
    parse_env_file,
    parse_signal,
    parse_size,
    to_document,
)
from tinit.errors import ConfigError, Problem

HERE = Path(__file__).parent
VALID = sorted((HERE / "configs" / "valid").glob("*.yaml"))
INVALID = sorted((HERE / "configs" / "invalid").glob("*.yaml"))
REFERENCE = HERE.parent / "configs" / "reference.yaml"
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root"}


def load(text: str, environ: dict[str, str] | None = None, **kwargs: bool) -> Config:
    """A config from text, with a fixed environment."""
    return parse_config(text, filename="services.yaml", environ=environ or ENV, **kwargs)


def problems(text: str, environ: dict[str, str] | None = None, **kwargs: bool) -> list[str]:
    """The problems of an invalid config, as printed, without the file name."""
    with pytest.raises(ConfigError) as info:
        load(text, environ, **kwargs)
    return [str(p).removeprefix("services.yaml:") for p in info.value.problems]


def service(body: str, environ: dict[str, str] | None = None, **kwargs: bool) -> Config:
    """A config with one service ``app`` whose keys are ``body``."""
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return load(f"version: 1\nservices:\n  app:\n{indented}\n", environ, **kwargs)


# -- the files in tests/configs


def expectations(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return [line.removeprefix("# expect: ") for line in lines if line.startswith("# expect: ")]


def located(problem: Problem, path: Path) -> str:
    return str(problem).removeprefix(str(path)).removeprefix(":").strip()


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_config_reports_exactly_its_expected_problems(path: Path) -> None:
    """Each file in configs/invalid gives the problems its `# expect:` lines list, in order."""
    expected = expectations(path)
    assert expected, f"{path.name} has no '# expect:' line"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ=ENV)
    assert [located(p, path) for p in info.value.problems] == expected


def test_invalid_configs_cover_at_least_45_mistakes() -> None:
    """The table of invalid configs is big enough to cover every check."""
    assert len(INVALID) >= 45


def test_five_mistakes_are_reported_at_once() -> None:
    """A file with five mistakes gets five errors from one run, not one per run."""
    path = HERE / "configs" / "invalid" / "five-mistakes.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(str(path), environ=ENV)
    assert len([p for p in info.value.problems if not p.warning]) == 5


@pytest.mark.parametrize("path", [*VALID, REFERENCE], ids=lambda p: p.stem)
def test_valid_config_loads_without_warnings(path: Path) -> None:
    """The files in configs/valid and the reference load cleanly."""
    config = load_config(str(path), environ=ENV)
    assert config.warnings == ()
    assert config.services


@pytest.mark.parametrize("path", [*VALID, REFERENCE], ids=lambda p: p.stem)
def test_normalized_document_loads_to_an_equal_config(path: Path, tmp_path: Path) -> None:
    """`tinit check` output, as YAML and as JSON, is itself a config equal to the original."""
    config = load_config(str(path), environ=ENV)
    as_yaml = tmp_path / "normalized.yaml"
    as_yaml.write_text(yaml.safe_dump(to_document(config), sort_keys=False))
    assert load_config(str(as_yaml), environ=ENV) == config
    as_json = tmp_path / "normalized.json"
    as_json.write_text(json.dumps(to_document(config), indent=2))
    assert load_config(str(as_json), environ=ENV) == config


def test_reference_sets_every_key_to_its_default() -> None:
    """configs/reference.yaml normalizes to the same document as a bare service."""
    reference = load_config(str(REFERENCE), environ=ENV)
    bare = load('version: 1\nservices:\n  app: {command: ["sleep", "infinity"]}\n')
    assert to_document(reference) == to_document(bare)


def test_config_module_imports_neither_trio_nor_yaml() -> None:
    """Importing tinit.config stays cheap: no trio, and yaml only when a file is read."""
    code = "import sys, tinit.config; print(sorted({'trio', 'yaml'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.strip() == "[]"


# -- reading the file


def test_unreadable_file_is_one_problem() -> None:
    """A missing config file is a ConfigError naming the file, not an OSError."""
    with pytest.raises(ConfigError) as info:
        load_config("/no/such/services.yaml")
    assert str(info.value) == "/no/such/services.yaml: can't read it: No such file or directory"


def test_file_that_is_not_utf8_is_one_problem(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are reported, not raised as UnicodeDecodeError."""
    path = tmp_path / "services.yaml"
    path.write_bytes(b"version: 1\n\xff\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 11 is 0xff\)"):
        load_config(str(path))


def test_control_characters_are_a_located_syntax_error() -> None:
    """Characters YAML forbids are reported with their line and column."""
    assert problems("version: 1\nservices: \x01\n") == [
        "2:11: invalid YAML: special characters are not allowed (character '\\x01')"
    ]


def test_x_keys_are_ignored_and_merge_keys_apply() -> None:
    """`x-` keys hold anchors at any level, and `<<` merges them, own keys winning."""
    config = load(
        "version: 1\n"
        "x-base: &base {restart: always, stop_timeout: 2s}\n"
        "services:\n"
        "  x-draft: {command: nonsense}\n"
        "  app:\n"
        "    <<: *base\n"
        "    x-note: anything\n"
        "    command: sleep 1\n"
        "    stop_timeout: 3s\n"
    )
    app = config.services["app"]
    assert list(config.services) == ["app"]
    assert (app.restart, app.stop_timeout) == ("always", 3.0)


def test_merge_of_a_non_mapping_is_reported() -> None:
    """`<<` takes only mappings."""
    assert problems("version: 1\nservices:\n  app: {<<: [1], command: sleep 1}\n") == [
        "3:14: services.app: a merge key (<<) takes a mapping or a list of mappings"
    ]


def test_services_keep_file_order() -> None:
    """Config.services iterates in the order of the file."""
    config = load(
        "version: 1\nservices:\n" + "".join(f"  {n}: {{command: 'true'}}\n" for n in "cab")
    )
    assert list(config.services) == ["c", "a", "b"]


def test_config_is_frozen() -> None:
    """Configs are values: assigning to one raises."""
    config = service("command: sleep 1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.version = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.services["app"].env["X"] = "1"  # type: ignore[index]


def test_problem_string_names_file_line_column_and_key() -> None:
    """ConfigError's text is one `FILE:LINE:COL: path: message` line per problem."""
    with pytest.raises(ConfigError) as info:
        service("command: sleep 1\nrestart: on_failure")
    assert str(info.value) == (
        "services.yaml:5:14: services.app.restart: unknown value 'on_failure' "
        "(did you mean 'on-failure'?)"
    )


# -- units


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("10s", 10.0), ("2m", 120.0), ("1h", 3600.0), (0.5, 0.5), (3, 3.0),
     ("1.5", 1.5), ("100ms", 0.1), ("0", 0.0)],
)  # fmt: skip
def test_durations(text: object, seconds: float) -> None:
    """Durations take ms, s, m, h or a plain number of seconds."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("10 sec", "'10 sec' is not a duration"),
        ("-1s", "'-1s' is negative"),
        (-2, "-2 is negative"),
        (True, "true is not a duration"),
        ("1e999", "'1e999' is not a duration"),
        (float("inf"), "inf is not a finite duration"),
        (10**400, "is not a finite duration"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    """A bad duration raises ValueError with a sentence for the user."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512K", 512 * 1024), ("256M", 256 << 20), ("1G", 1 << 30), ("1g", 1 << 30),
     ("2MiB", 2 << 20), (4096, 4096), ("1.5K", 1536)],
)  # fmt: skip
def test_sizes(text: object, size: int) -> None:
    """Sizes are powers of 1024, or plain bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("value", ["12X", "", "1.2.3M", -1, True, 1.5])
def test_bad_sizes(value: object) -> None:
    """A bad size raises ValueError."""
    with pytest.raises(ValueError, match="size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGTERM", signal.SIGTERM), ("TERM", signal.SIGTERM), ("term", signal.SIGTERM),
     (9, 9), ("15", 15), ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("SIGRTMAX-1", signal.SIGRTMAX - 1),
     ("RTMIN", signal.SIGRTMIN), ("SIGCLD", signal.SIGCHLD)],
)  # fmt: skip
def test_signals(text: object, number: int) -> None:
    """Signals are names with or without SIG, real-time offsets, or numbers."""
    assert parse_signal(text) == number


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("SIGFOO", "unknown signal 'SIGFOO' (did you mean 'SIGIO'?)"),
        (0, "there is no signal number 0 on this system"),
        (99, "there is no signal number 99 on this system"),
        ("SIGRTMAX+1", "'SIGRTMAX+1' is outside the real-time signals"),
        (False, "false is not a signal"),
    ],
)
def test_bad_signals(value: object, message: str) -> None:
    """A bad signal raises ValueError, with a did-you-mean for names."""
    with pytest.raises(ValueError) as info:
        parse_signal(value)
    assert str(info.value).startswith(message)


# -- ${VAR} expansion


def test_expansion_of_set_unset_and_empty_variables() -> None:
    """${A} is A; ${A:-x} is x when A is unset or empty; $$ is $; other $ are literal."""
    env = {**ENV, "A": "", "B": "bee"}
    config = service(
        "command: sleep 1\n"
        "env: {ONE: '${A:-x}', TWO: '${B:-x}', THREE: '${NOPE:-x y}', FOUR: '$$B $5 $ ${B}'}",
        env,
    )
    assert dict(config.services["app"].env) == {
        "ONE": "x",
        "TWO": "bee",
        "THREE": "x y",
        "FOUR": "$B $5 $ bee",
    }


def test_expansion_happens_before_a_string_command_is_split() -> None:
    """A variable holding spaces becomes several arguments of a string command."""
    config = service("command: echo ${ARGS} '${ARGS}'", {**ENV, "ARGS": "a b"})
    assert config.services["app"].command == ("echo", "a", "b", "a b")


def test_expanded_plain_scalar_reads_as_what_it_holds() -> None:
    """Unquoted ${N} holding 5 is the number 5; quoted it stays a string."""
    config = service(
        "command: sleep 1\nmax_restarts: ${N}\noneshot: ${YES}", {**ENV, "N": "5", "YES": "true"}
    )
    assert config.services["app"].max_restarts == 5
    assert config.services["app"].oneshot is True
    assert problems("version: 1\nservices:\n  app: {command: sleep 1, max_restarts: '${N}'}\n",
                    {**ENV, "N": "5"}) == [
        "3:41: services.app.max_restarts: expected a whole number, got the string '5'"
    ]  # fmt: skip


def test_unset_variable_is_an_error_at_its_value() -> None:
    """An unset ${NAME} without default is an error located at the value."""
    assert problems("version: 1\nservices:\n  app: {command: sleep 1, workdir: '${DIR}'}\n") == [
        "3:36: services.app.workdir: environment variable 'DIR' is not set; "
        "set it or write ${DIR:-default}"
    ]


def test_unset_variable_in_command_is_a_warning_and_stays_unexpanded() -> None:
    """In a command an unset ${NAME} may be resolved at run time: a warning, text kept."""
    config = service("command: ${APP_BIN} --port ${PORT:-80} $$HOME")
    app = config.services["app"]
    assert app.command == ("${APP_BIN}", "--port", "80", "$HOME")
    assert [str(w) for w in config.warnings] == [
        "services.yaml:4:14: warning: services.app.command: ${APP_BIN} is not set here, "
        "so the command can only be resolved at run time"
    ]


def test_document_escapes_dollars_so_it_reloads_unchanged() -> None:
    """A literal $ in a value is written as $$ in the normalized document."""
    config = service("command: echo $$HOME\nenv: {A: '$${B}'}")
    document = to_document(config)
    assert document["services"]["app"]["command"] == "echo $$HOME"
    assert document["services"]["app"]["env"] == {"A": "$${B}"}
    assert load(yaml.safe_dump(document)) == config


# -- environment


def test_env_file_syntax() -> None:
    """export, quotes, comments and blank lines are understood; bad lines are listed."""
    text = (
        '# comment\n\nA=1\nexport B = two words \nC=\'single $x\'\nD="dq \\" \\n"\n'
        "E=\nF=a=b\nbad line\n=x\nG='open\n"
    )
    values, bad = parse_env_file(text)
    assert values == {
        "A": "1",
        "B": "two words",
        "C": "single $x",
        "D": 'dq " \n',
        "E": "",
        "F": "a=b",
    }
    assert bad == [
        (9, "expected KEY=VALUE, got 'bad line'"),
        (10, "expected KEY=VALUE, got '=x'"),
        (11, "G: the quote ' is not closed"),
    ]


def test_environment_precedence(tmp_path: Path) -> None:
    """tinit's environment < each env_file in order < env."""
    (tmp_path / "one.env").write_text("A=file1\nB=file1\nC=file1\n")
    (tmp_path / "two.env").write_text("B=file2\nC=file2\n")
    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n  app:\n    command: sleep 1\n"
        "    env_file: [one.env, two.env]\n    env: {C: env}\n"
    )
    config = load_config(str(tmp_path / "services.yaml"), environ={**ENV, "A": "tinit", "Z": "z"})
    app = config.services["app"]
    assert {k: app.environment[k] for k in "ABCZ"} == {
        "A": "file1",
        "B": "file2",
        "C": "env",
        "Z": "z",
    }
    assert app.env_file == (str(tmp_path / "one.env"), str(tmp_path / "two.env"))


def test_clear_env_starts_from_nothing(tmp_path: Path) -> None:
    """With clear_env, only env_file and env make the environment."""
    (tmp_path / "a.env").write_text("FROM_FILE=1\n")
    config = service(
        f"command: /bin/true\nclear_env: true\nenv_file: {tmp_path}/a.env\nenv: {{X: 1}}"
    )
    assert dict(config.services["app"].environment) == {"FROM_FILE": "1", "X": "1"}


def test_command_is_looked_up_on_the_services_own_path(tmp_path: Path) -> None:
    """PATH for the command check comes from the service's environment."""
    program = tmp_path / "myprog"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    config = service(f"command: myprog\nenv: {{PATH: '{tmp_path}'}}")
    assert config.services["app"].command == ("myprog",)


def test_env_values_are_taken_as_written() -> None:
    """Numbers and YAML booleans in env are the text as written; null is an error."""
    config = service(
        "command: sleep 1\nenv:\n  PORT: 8000\n  DEBUG: yes\n  RATIO: 0.50\n  N: ${N}\n"
        "  D: 2020-13-45",
        {**ENV, "N": "007"},
    )
    assert dict(config.services["app"].env) == {
        "PORT": "8000",
        "DEBUG": "yes",
        "RATIO": "0.50",
        "N": "007",
        "D": "2020-13-45",
    }
    assert problems("version: 1\nservices:\n  app: {command: sleep 1, env: {A: }}\n") == [
        "3:36: services.app.env.A: has no value; write '' for an empty string"
    ]


def test_missing_env_file_offline_is_a_warning() -> None:
    """Offline, an env_file absent from this machine is left out with a warning."""
    config = service("command: sleep 1\nenv_file: /no/such.env", offline=True)
    assert [w.message for w in config.warnings] == [
        "can't read env file '/no/such.env': No such file or directory (left out: checking offline)"
    ]


# -- commands


def test_string_command_is_split_like_a_shell_would_without_one() -> None:
    """A string command is shlex-split; quotes group words."""
    app = service("command: python3 -c 'print(1)'  \"a b\"").services["app"]
    assert app.command == ("python3", "-c", "print(1)", "a b")
    assert app.source_command == "python3 -c 'print(1)'  \"a b\""


def test_list_command_is_the_exact_argv() -> None:
    """A list command is the argv as given, numbers as written."""
    app = service("command: [sleep, 10, 'a  b']").services["app"]
    assert app.command == app.source_command == ("sleep", "10", "a  b")


def test_shell_command_runs_with_bin_sh() -> None:
    """shell: true runs the string with /bin/sh -c."""
    app = service("command: echo $$HOME | tr a-z A-Z\nshell: true").services["app"]
    assert app.command == ("/bin/sh", "-c", "echo $HOME | tr a-z A-Z")
    assert app.shell


def test_offline_skips_the_checks_against_this_machine() -> None:
    """--offline accepts commands, users and groups this machine doesn't have."""
    app = service(
        "command: no-such-program\nuser: no-such-user-xyzzy\ngroup: no-such-group-xyzzy",
        offline=True,
    ).services["app"]
    assert (app.user, app.group) == ("no-such-user-xyzzy", "no-such-group-xyzzy")


def test_numeric_user_and_group_are_always_accepted() -> None:
    """uids and gids need no entry in the user database."""
    app = service("command: sleep 1\nuser: 12345\ngroup: '54321'").services["app"]
    assert (app.user, app.group) == ("12345", "54321")


def test_relative_command_without_workdir_is_left_to_run_time() -> None:
    """./prog depends on where tinit runs unless workdir says: not checked."""
    assert service("command: ./no-such-prog").services["app"].command == ("./no-such-prog",)


# -- defaults and combinations


def test_service_defaults() -> None:
    """A bare service gets the defaults docs/configuration.md gives."""
    app = service("command: sleep 1").services["app"]
    assert app.restart == "on-failure"
    assert app.success_exit_codes == frozenset({0})
    assert app.backoff == Backoff(0.1, 30.0, 2.0, 30.0)
    assert (app.max_restarts, app.stop_signal, app.stop_timeout) == (10, signal.SIGTERM, 5.0)
    assert (app.output, app.stdin, app.umask, app.ready, app.health) == (
        "prefix",
        None,
        None,
        None,
        None,
    )


def test_oneshot_defaults_to_never_restart() -> None:
    """A oneshot's default restart is never; on-failure may be asked for."""
    assert service("command: 'true'\noneshot: true").services["app"].restart == "never"
    config = service("command: 'true'\noneshot: true\nrestart: on-failure")
    assert config.services["app"].restart == "on-failure"


def test_service_output_defaults_to_settings_output() -> None:
    """A service without output: uses settings.output; `output: null` discards."""
    config = load(
        "version: 1\nsettings: {output: json}\nservices:\n"
        "  a: {command: sleep 1}\n  b: {command: sleep 1, output: null}\n"
    )
    assert (config.services["a"].output, config.services["b"].output) == ("json", "null")


def test_probe_defaults() -> None:
    """ready polls every 500ms for 60s; health every 10s, 3 failures in a row."""
    app = service("command: sleep 1\nready: {tcp: 8000}\nhealth: {exec: true --now}").services[
        "app"
    ]
    assert app.ready == TcpProbe(
        address=("127.0.0.1", 8000), interval=0.5, timeout=2.0, start_timeout=60.0, failures=1
    )
    assert app.health == ExecProbe(
        argv=("true", "--now"), interval=10.0, timeout=2.0, start_timeout=None, failures=3
    )


def test_probe_addresses() -> None:
    """tcp takes host:port, [v6]:port and a bare port; health_listen takes :port."""
    config = load(
        "version: 1\nsettings: {health_listen: ':8089'}\nservices:\n"
        "  a: {command: sleep 1, ready: {tcp: 'localhost:80'}}\n"
        "  b: {command: sleep 1, ready: {tcp: '[::1]:81'}}\n"
    )
    assert config.settings.health_listen == ("0.0.0.0", 8089)
    assert [s.ready.address for s in config.services.values() if isinstance(s.ready, TcpProbe)] == [
        ("localhost", 80),
        ("::1", 81),
    ]


def test_cgroups_takes_yaml_booleans_as_off() -> None:
    """`cgroups: off` (a YAML 1.1 false) means off."""
    for word in ("off", "no", "false"):
        config = load(
            f"version: 1\nsettings: {{cgroups: {word}}}\nservices: {{a: {{command: 'true'}}}}\n"
        )
        assert config.settings.cgroups == "off"


def test_forward_signals_replaces_the_default_list() -> None:
    """A forward_signals list replaces [SIGUSR1, SIGUSR2, SIGWINCH]; [] forwards nothing."""
    template = "version: 1\nsettings: {forward_signals: %s}\nservices: {a: {command: 'true'}}\n"
    assert load(template % "[USR2]").settings.forward_signals == (signal.SIGUSR2,)
    assert load(template % "[]").settings.forward_signals == ()


def test_depends_on_list_means_started() -> None:
    """The list form of depends_on waits for `started`."""
    config = load(
        "version: 1\nservices:\n  db: {command: sleep 1}\n  cache: {command: sleep 1}\n"
        "  web: {command: sleep 1, depends_on: [db, cache]}\n"
    )
    assert dict(config.services["web"].depends_on) == {"db": "started", "cache": "started"}


def test_depends_on_forms_make_one_graph() -> None:
    """The list and mapping forms of depends_on, mixed in one file, give each service its edges."""
    config = load(
        "version: 1\nsettings: {shutdown_timeout: 1m}\nservices:\n"
        "  web: {command: sleep 1, depends_on: [api, static]}\n"
        "  api: {command: sleep 1, depends_on: {db: ready, migrate: completed}}\n"
        "  migrate: {command: sleep 1, oneshot: true, depends_on: [db]}\n"
        "  static: {command: sleep 1}\n"
        "  db: {command: sleep 1, ready: {tcp: 5432}}\n"
    )
    assert {name: dict(s.depends_on) for name, s in config.services.items()} == {
        "web": {"api": "started", "static": "started"},
        "api": {"db": "ready", "migrate": "completed"},
        "migrate": {"db": "started"},
        "static": {},
        "db": {},
    }


def test_shutdown_budget_warning_names_the_longest_chain() -> None:
    """Stop timeouts along a dependency chain that outlast shutdown_timeout are a warning."""
    config = load(
        "version: 1\nsettings: {shutdown_timeout: 10s}\nservices:\n"
        "  db: {command: sleep 1, stop_timeout: 8s}\n"
        "  web: {command: sleep 1, stop_timeout: 4s, depends_on: [db]}\n"
        "  other: {command: sleep 1, stop_timeout: 9s}\n"
    )
    assert [str(w) for w in config.warnings] == [
        "services.yaml:2:30: warning: settings.shutdown_timeout: stopping web -> db can take "
        "12s (the sum of their stop_timeout), more than settings.shutdown_timeout (10s); "
        "raise it or lower stop_timeout"
    ]


def test_ready_condition_on_a_service_without_probe_is_a_warning() -> None:
    """Waiting for `ready` on a service with no ready probe waits for `started`."""
    config = load(
        "version: 1\nsettings: {shutdown_timeout: 1m}\nservices:\n"
        "  db: {command: sleep 1}\n  web: {command: sleep 1, depends_on: {db: ready}}\n"
    )
    assert [w.message for w in config.warnings] == [
        "db has no ready probe, so it is ready as soon as it starts"
    ]


def test_umask_forms() -> None:
    """umask is octal digits in a string, or an integer mode; a decimal-looking int warns."""
    assert service("command: sleep 1\numask: '0027'").services["app"].umask == 0o27
    assert service("command: sleep 1\numask: 0022").services["app"].umask == 0o22
    config = service("command: sleep 1\numask: 22")
    assert config.services["app"].umask == 22
    assert [w.message for w in config.warnings] == [
        '22 is read as a decimal number; write "022" if you meant octal'
    ]


def test_warnings_travel_with_errors() -> None:
    """When a file has errors, its warnings are in the same ConfigError, marked as such."""
    assert problems("version: 1\nservices:\n  app: {command: '${X} a', restart: bad}\n") == [
        "3:18: warning: services.app.command: ${X} is not set here, "
        "so the command can only be resolved at run time",
        "3:37: services.app.restart: unknown value 'bad'; expected one of always, on-failure, never",
    ]


def test_type_errors_name_what_was_found() -> None:
    """Wrong types say what was expected and what the file holds."""
    assert problems(
        "version: 1\nservices:\n  app:\n    command: {a: 1}\n    critical: 1\n"
        "    ready: [tcp]\n    env_file: 3\n"
    ) == [
        "4:14: services.app.command: expected a string, got a mapping",
        "5:15: services.app.critical: expected true or false, got the number 1",
        "6:12: services.app.ready: expected a mapping, got a list",
        "7:15: services.app.env_file: expected a string, got the number 3; "
        'quote it ("3") if you mean the text',
    ]


def test_capabilities_are_normalized() -> None:
    """Capability names lose CAP_ and are upper-cased; duplicates collapse."""
    caps = (
        service("command: sleep 1\ncapabilities: {add: [cap_net_raw, NET_RAW, chown]}")
        .services["app"]
        .capabilities
    )
    assert caps.add == ("NET_RAW", "CHOWN")


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """workdir, stdin and env_file may be relative to the directory of the config file."""
    (tmp_path / "srv").mkdir()
    (tmp_path / "app.env").write_text("A=1\n")
    (tmp_path / "services.yaml").write_text(
        "version: 1\nservices:\n  app: {command: sleep 1, workdir: srv, stdin: in.txt, "
        "env_file: app.env}\n"
    )
    app = load_config(str(tmp_path / "services.yaml"), environ=ENV).services["app"]
    assert (app.workdir, app.stdin) == (str(tmp_path / "srv"), str(tmp_path / "in.txt"))
    assert app.env_file == (str(tmp_path / "app.env"),)


def test_missing_workdir_is_a_warning() -> None:
    """A workdir absent here may be created before the service starts: only a warning."""
    config = service("command: sleep 1\nworkdir: /no/such/dir")
    assert [w.message for w in config.warnings] == [
        "no directory '/no/such/dir' here; it must exist when the service starts"
    ]
    assert service("command: sleep 1\nworkdir: /no/such/dir", offline=True).warnings == ()


def test_depends_on_of_the_wrong_shape_says_which_shapes_fit() -> None:
    """depends_on is a list of names or a mapping of name to condition."""
    assert problems(
        "version: 1\nservices:\n  db: {command: sleep 1}\n  app: {command: sleep 1, depends_on: db}\n"
    ) == [
        "4:39: services.app.depends_on: expected a list of names or a mapping of "
        "name: condition, got the string 'db'"
    ]


def test_environ_defaults_to_tinits_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without environ, ${VAR} and the services' environment come from os.environ."""
    monkeypatch.setenv("TINIT_TEST_GREETING", "hello")
    config = parse_config(
        "version: 1\nservices: {app: {command: 'echo ${TINIT_TEST_GREETING}'}}\n",
        filename="services.yaml",
    )
    app = config.services["app"]
    assert app.command == ("echo", "hello")
    assert app.environment["TINIT_TEST_GREETING"] == "hello"


# -- the shutdown budget and the defaults


def test_default_stop_timeouts_do_not_count_against_the_shutdown_budget() -> None:
    """Defaults along a 3-deep chain: no warning; a default is cut to what is left anyway."""
    config = load(
        "version: 1\nservices:\n"
        "  db: {command: sleep 1}\n"
        "  api: {command: sleep 1, depends_on: [db]}\n"
        "  web: {command: sleep 1, depends_on: [api]}\n"
    )
    assert config.warnings == ()
    assert config.services["web"].stop_timeout == 5.0


def test_explicit_stop_timeouts_that_exceed_the_budget_still_warn() -> None:
    """Only what the file sets counts: db and web set theirs, api between them doesn't."""
    config = load(
        "version: 1\nservices:\n"
        "  db: {command: sleep 1, stop_timeout: 6s}\n"
        "  api: {command: sleep 1, depends_on: [db]}\n"
        "  web: {command: sleep 1, stop_timeout: 4s, depends_on: [api]}\n"
    )
    assert [str(w) for w in config.warnings] == [
        "services.yaml:5:3: warning: services.web: stopping web -> db can take 10s (the sum "
        "of their stop_timeout), more than settings.shutdown_timeout (9s); raise it or lower "
        "stop_timeout"
    ]


SHIPPED = sorted((HERE.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_passes_check_without_a_warning(path: Path) -> None:
    """`tinit check` on each file in configs/ (Dockerfile.example copies one) says nothing."""
    result = subprocess.run(
        [sys.executable, "-m", "tinit", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_a_long_dependency_chain_is_checked_without_recursion() -> None:
    """A thousand services in one chain: cycles and the budget are walked without recursing."""
    lines = [f"  s{i}: {{command: sleep 1, depends_on: [s{i + 1}]}}" for i in range(999)]
    text = "version: 1\nservices:\n" + "\n".join(lines) + "\n  s999: {command: sleep 1}\n"
    assert len(load(text, offline=True).services) == 1000
    looped = text.replace("s999: {command: sleep 1}", "s999: {command: sleep 1, depends_on: [s0]}")
    [cycle] = problems(looped, offline=True)
    assert cycle.startswith("3:39: services.s0.depends_on: dependency cycle: s0 -> s1 -> s2")


# -- shell syntax in a command no shell runs


@pytest.mark.parametrize(
    ("command", "found"),
    [
        ("python3 app.py && echo done > /tmp/x | cat", "'&&', '>' and '|' are"),
        ("echo a; echo b", "';' is"),
        ("echo a|| echo b", "'||' is"),
        ("cat < /etc/hostname", "'<' is"),
        ('echo "$(id -u)"', "'$(' is"),
        ("echo `id`", "'`' is"),
        ("ls *.py", "'*' is"),
        ("ls file?.txt", "'?' is"),
        ("ls [ab].txt", "'[...]' is"),
    ],
)
def test_shell_syntax_in_a_string_command_is_a_warning(command: str, found: str) -> None:
    config = service(f"command: {json.dumps(command)}", offline=True)
    [warning] = config.warnings
    assert warning.warning
    assert f"services.app.command: {found} shell syntax, but no shell runs this" in str(warning)
    assert "set shell: true for a shell, or give the command as a list" in str(warning)


@pytest.mark.parametrize(
    "body",
    [
        'command: ["sh", "-c", "echo a && echo b > /tmp/x"]',
        "command: grep 'a|b' /etc/hosts",
        'command: grep "a;b" /etc/hosts',
        "command: echo '$(id)' '*'",
        "command: echo a\\|b",
        "command: test [ -e /x ]",
        "shell: true\ncommand: echo a && echo b > /tmp/x",
        "command: sleep 1\nready: {exec: [sh, -c, 'test -e /x && true']}",
    ],
)
def test_quoted_or_listed_shell_syntax_is_not_a_warning(body: str) -> None:
    assert service(body, offline=True).warnings == ()


def test_shell_syntax_in_an_exec_probe_is_a_warning() -> None:
    config = service("command: sleep 1\nready: {exec: sh -c $(cat /x)}", offline=True)
    [warning] = config.warnings
    assert str(warning) == (
        "services.yaml:5:19: warning: services.app.ready.exec: '$(' is shell syntax, but no "
        "shell runs this: the program gets it as is; give the probe as a list, "
        "[sh, -c, '...'] to run it with a shell"
    )


# -- hostile files: each is a located problem and exit 2, in bounded time


def nested(depth: int) -> str:
    return "{a: " * depth + "1" + "}" * depth


def test_deep_nesting_is_one_problem_not_a_recursion_error() -> None:
    text = f"version: 1\nservices:\n  app: {{command: sleep 1}}\nx-deep: {nested(3000)}\n"
    assert problems(text) == ["4:258: nested more than 64 levels deep, the limit"]


def test_nesting_up_to_the_limit_is_read() -> None:
    text = f"version: 1\nservices:\n  app: {{command: sleep 1}}\nx-deep: {nested(62)}\n"
    assert load(text, offline=True).services


def test_a_merge_chain_counts_as_deep_as_it_nests() -> None:
    """Each `<<: *prev` nests one level more; a long chain is stopped at the limit."""
    anchors = "".join(f"x-{i}: &m{i} {{<<: *m{i - 1}}}\n" for i in range(1, 3000))
    text = f"version: 1\nx-0: &m0 {{a: 1}}\n{anchors}services:\n  app: {{command: sleep 1}}\n"
    [problem] = problems(text)
    assert problem.endswith("an alias nests its anchor more than 64 levels deep, the limit")


def test_billion_laughs_is_one_problem_in_bounded_time() -> None:
    """Aliases of aliases: each counts what it repeats, so the expansion is never walked."""
    text = 'version: 1\nl0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n'
    for level in range(1, 9):
        text += f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 8)}]\n"
    text += "services:\n  app: {command: sleep 1}\n"
    start = time.monotonic()
    [problem] = problems(text)
    assert time.monotonic() - start < 5
    assert problem.endswith("counting each alias as what it repeats; the limit is 50,000")


def test_one_mapping_aliased_into_many_services_is_bounded() -> None:
    """The 14 KB file that took seconds and hundreds of MB: now one problem, at once."""
    big = "x-big: &big\n" + "".join(f"  K{i}: v{i}\n" for i in range(1000))
    services = "".join(f"  s{i}:\n    command: sleep 1\n    env: *big\n" for i in range(500))
    start = time.monotonic()
    [problem] = problems(f"version: 1\n{big}services:\n{services}")
    assert time.monotonic() - start < 5
    assert "more than 50,000 values" in problem


def test_too_many_services_is_one_problem() -> None:
    lines = "".join(f"  s{i}: {{command: sleep 1}}\n" for i in range(1001))
    assert problems(f"version: 1\nservices:\n{lines}", offline=True) == [
        "3:3: services: has 1001 services, more than 1000, the limit"
    ]


def test_a_string_over_the_limit_is_one_problem() -> None:
    text = f"version: 1\nservices:\n  app: {{command: sleep {'x' * 70_000}}}\n"
    assert problems(text) == ["3:18: a string of more than 65536 characters, the limit"]


def test_a_file_over_one_mib_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    path = tmp_path / "services.yaml"
    path.write_text("version: 1\nservices:\n  app: {command: sleep 1}\n" + "#" * (1 << 20))
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert str(info.value) == f"{path}: can't read it: it is larger than 1 MiB, the limit"


def test_a_config_that_is_a_device_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero")
    assert (
        str(info.value) == "/dev/zero: can't read it: it is a device, not a regular file or a pipe"
    )


def test_a_config_fifo_without_a_writer_reads_as_empty(tmp_path: Path) -> None:
    """Opened non-blocking: a FIFO no one writes to is no hang."""
    fifo = tmp_path / "services.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is empty"):
        load_config(str(fifo))


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("env_file", '"/tmp/a\\0b"'),
        ("user", '"ro\\0ot"'),
        ("group", '"ro\\0ot"'),
        ("output", '"file:/tmp/a\\0b"'),
        ("stdin", '"/tmp/a\\0b"'),
        ("workdir", '"/tmp\\0"'),
        ("command", '"sleep 1\\0"'),
        ("env", '{A: "b\\0"}'),
    ],
)
def test_a_nul_in_any_string_is_a_problem_for_check_and_for_run(key: str, value: str) -> None:
    body = f"{key}: {value}" if key == "command" else f"command: sleep 1\n{key}: {value}"
    for at_run in (False, True):
        [problem] = problems(
            "version: 1\nservices:\n  app:\n    " + body.replace("\n", "\n    "), at_run=at_run
        )
        assert "contains a NUL character (\\0), which no path, name or argument can hold" in problem


def test_a_lone_surrogate_is_a_problem() -> None:
    assert problems('version: 1\nservices:\n  app: {command: "sleep \\ud800"}\n') == [
        "3:18: services.app.command: is not valid Unicode text: character 7 ('\\ud800') is a "
        "lone surrogate"
    ]


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("/dev/zero", "it is a device, not a regular file"),
        ("/tmp", "it is a directory, not a regular file"),
    ],
)
def test_an_env_file_that_is_no_regular_file_is_a_problem(target: str, reason: str) -> None:
    assert problems(service_text(f"command: sleep 1\nenv_file: {target}")) == [
        f"5:15: services.app.env_file: can't read env file {target!r}: {reason}"
    ]


def test_an_env_file_fifo_is_refused_without_a_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "app.env"
    os.mkfifo(fifo)
    [problem] = problems(service_text(f"command: sleep 1\nenv_file: {fifo}"))
    assert problem.endswith("it is a FIFO, not a regular file")


def test_an_env_file_over_one_mib_is_a_problem(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_text("A=" + "x" * (1 << 20) + "\n")
    [problem] = problems(service_text(f"command: sleep 1\nenv_file: {env}"))
    assert problem.endswith("it is larger than 1 MiB, the limit")


def test_a_nul_in_an_env_file_is_a_problem(tmp_path: Path) -> None:
    env = tmp_path / "app.env"
    env.write_bytes(b"A=1\nB=x\0y\n")
    [problem] = problems(service_text(f"command: sleep 1\nenv_file: {env}"))
    assert problem.endswith(f"{env}:2: contains a NUL character (\\0), which no variable can hold")


def test_dev_null_is_an_empty_env_file() -> None:
    config = service("command: sleep 1\nenv_file: /dev/null")
    assert config.services["app"].env_file == ("/dev/null",)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "user: 99999999999999999999",
            "user id 99999999999999999999 is out of range (0 to 4294967294)",
        ),
        ("ready: {notify_fd: 100000}", "must be 1023 or less, got 100000"),
        ("critical: !!bool maybe", "can't read 'maybe' as bool: 'maybe'"),
        ("oneshot: !!timestamp x", "can't read 'x' as timestamp"),
        ("stop_signal: '²'", "unknown signal '²'"),
        ("critical: !!binary1 x", "could not determine a constructor"),
    ],
)
def test_odd_values_are_problems_not_exceptions(body: str, message: str) -> None:
    assert message in "\n".join(problems(service_text(f"command: sleep 1\n{body}"), offline=True))


def test_an_exit_code_written_in_other_digits_is_a_problem() -> None:
    text = (
        'version: 1\nsettings: {exit_code_remap: {"²": 1}}\nservices:\n  app: {command: sleep 1}\n'
    )
    assert problems(text) == ["2:30: settings.exit_code_remap: '²' is not an exit code (0 to 255)"]


def service_text(body: str) -> str:
    indented = "\n".join("    " + line for line in body.strip().splitlines())
    return f"version: 1\nservices:\n  app:\n{indented}\n"


# -- disabled and replicas


def test_replicas_make_one_service_per_instance_each_told_its_number() -> None:
    config = service(
        'command: ["echo", "${TINIT_REPLICA}"]\nreplicas: 3\n'
        'env: {PORT: "80${TINIT_REPLICA}"}\nclear_env: true'
    )
    assert list(config.services) == ["app-1", "app-2", "app-3"]
    for number in (1, 2, 3):
        instance = config.services[f"app-{number}"]
        assert instance.command == ("echo", str(number))
        assert instance.env == {"PORT": f"80{number}"}
        assert instance.environment == {"PORT": f"80{number}", "TINIT_REPLICA": str(number)}
        assert (instance.replica_of, instance.replica) == ("app", number)


def test_one_replica_is_the_service_under_its_own_name_without_the_variable() -> None:
    config = service("command: sleep 1\nreplicas: 1")
    assert list(config.services) == ["app"]
    assert "TINIT_REPLICA" not in config.services["app"].environment
    assert config.services["app"].replica_of is None


def test_a_dependency_on_a_replicated_service_is_one_on_each_instance() -> None:
    config = load(
        "version: 1\nservices:\n"
        "  worker: {command: sleep 1, replicas: 2}\n"
        "  web: {command: sleep 1, depends_on: {worker: ready, worker-2: started}}\n"
        "  api: {command: sleep 1, depends_on: [worker-1]}\n"
    )
    assert dict(config.services["web"].depends_on) == {"worker-1": "ready", "worker-2": "started"}
    assert dict(config.services["api"].depends_on) == {"worker-1": "started"}


def test_normalized_document_writes_a_replicated_service_once_as_written() -> None:
    config = load(
        "version: 1\nservices:\n"
        "  worker: {command: 'echo $$HOME ${TINIT_REPLICA}', replicas: 3}\n"
        "  web: {command: sleep 1, depends_on: {worker: ready}, disabled: true}\n"
    )
    services = to_document(config)["services"]
    assert list(services) == ["worker", "web"]
    assert services["worker"]["command"] == "echo $$HOME ${TINIT_REPLICA}"
    assert services["worker"]["replicas"] == 3
    assert services["web"]["depends_on"] == {"worker": "ready"}
    assert services["web"]["disabled"] is True
    again = load(yaml.safe_dump(to_document(config), sort_keys=False))
    assert again == config
    assert again.services["worker-2"].command == ("echo", "$HOME", "2")


def test_an_instance_name_taken_by_another_service_is_an_error() -> None:
    found = problems(
        "version: 1\nservices:\n  a: {command: sleep 1, replicas: 12}\n  a-11: {command: sleep 1}\n"
    )
    assert found == [
        "3:3: services.a.replicas: its instance 'a-11' has the name of another service;"
        " rename one of them"
    ]


def test_an_unset_variable_in_a_replicated_command_is_reported_once() -> None:
    with pytest.raises(ConfigError) as info:
        service("command: app ${NOPE}\nreplicas: 5", at_run=True)
    found = [str(p) for p in info.value.problems]
    assert len(found) == 1 and "'NOPE' is not set" in found[0]


# -- log_rotation


def test_log_rotation_is_inherited_by_file_outputs_only() -> None:
    config = load("""
version: 1
settings:
  log_rotation: {max_size: 1M, keep: 2}
services:
  file: {command: sleep 1, output: "file:/var/log/a.log"}
  own: {command: sleep 1, output: "file:/var/log/b.log", log_rotation: {max_size: 8K}}
  off: {command: sleep 1, output: "file:/var/log/c.log", log_rotation: null}
  terminal: {command: sleep 1}
""")
    rotation = {name: s.log_rotation for name, s in config.services.items()}
    assert rotation == {
        "file": LogRotation(max_size=1 << 20, keep=2),
        "own": LogRotation(max_size=8192, keep=5),
        "off": None,
        "terminal": None,
    }
    assert not config.warnings


def test_a_default_log_rotation_without_a_file_output_is_a_warning() -> None:
    config = load("""
version: 1
settings:
  log_rotation: {max_size: 1M}
services:
  web: {command: sleep 1}
""")
    assert [str(w).removeprefix("services.yaml:") for w in config.warnings] == [
        "4:17: warning: settings.log_rotation: no service writes to a file"
        " (output: file:/path), so nothing is rotated"
    ]
