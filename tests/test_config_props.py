"""Property tests: whatever a file holds, loading it ends in a Config or a ConfigError."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinit.config import parse_config, parse_duration, parse_signal, parse_size
from tinit.config._units import format_duration, format_signal, format_size
from tinit.errors import ConfigError

FULL = Path(__file__).parent / "configs" / "valid" / "full.yaml"
ENV = {"PATH": "/usr/bin:/bin", "HOME": "/root", "SET": "5"}
# Words the validator has opinions about, so random documents reach past the type checks.
WORDS = [
    "version", "settings", "services", "command", "shell", "oneshot", "restart", "ready",
    "health", "tcp", "http", "exec", "notify_fd", "interval", "depends_on", "env", "env_file",
    "limits", "memory", "cpu", "backoff", "capabilities", "namespaces", "cgroups", "output",
    "forward_signals", "exit_code_remap", "stop_signal", "umask", "user", "x-any", "<<", "web",
    "10s", "250ms", "-1s", "1G", "SIGTERM", "SIGRTMIN+3", "on-failure", "always", "ready",
    "completed", "file:", "file:/x", "ALL", "127.0.0.1:80", "http://h/", "${SET}", "${UNSET}",
    "$$", "${X:-1}", "sleep 1", "'", "/bin/sh", "022", "off", "net",
]  # fmt: skip
PROPERTIES = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(WORDS),
)
keys = st.one_of(st.sampled_from(WORDS), st.text(max_size=8), st.integers(0, 300))
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)
documents = st.one_of(
    values,
    values.map(lambda service: {"version": 1, "services": {"web": service}}),
    st.dictionaries(st.sampled_from(WORDS), values, max_size=6).map(
        lambda service: {"version": 1, "services": {"web": service, "db": {"command": "true"}}}
    ),
)


def check(text: str, offline: bool) -> None:
    """Loading ``text`` gives a Config, or a ConfigError with located sentences."""
    try:
        parse_config(text, filename="prop.yaml", environ=ENV, offline=offline)
    except ConfigError as exc:
        problems = exc.problems
    else:
        return
    assert problems
    assert any(not p.warning for p in problems)
    assert all(p.message and p.file == "prop.yaml" for p in problems)


@PROPERTIES
@given(documents, st.booleans())
def test_random_documents_end_in_config_or_config_error(document: Any, offline: bool) -> None:
    """Random YAML data, anywhere in the tree, never raises anything but ConfigError."""
    check(yaml.safe_dump(document), offline)


@PROPERTIES
@given(st.text(max_size=200), st.booleans())
def test_random_text_ends_in_config_or_config_error(text: str, offline: bool) -> None:
    """Random text, YAML or not, never raises anything but ConfigError."""
    check(text, offline)


TOKENS = [
    "version: 1\n", "services:\n", "settings:\n", "  web:\n", "  db:\n", "    command: sleep 1\n",
    "    depends_on: [web]\n", "    <<: *a\n", "x-a: &a {restart: always}\n", "&a ", "*a", "&b ",
    "*b", "<<: ", "{", "}", "[", "]", ", ", ": ", "\n", "  ", "    ", "- ", "? ", "!!str ", "'",
    "${SET}", "ready: ", "tcp: 80", "command", "env", "oneshot: true", "restart: always",
]  # fmt: skip


@PROPERTIES
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map("".join), st.booleans())
def test_yaml_shaped_text_ends_in_config_or_config_error(text: str, offline: bool) -> None:
    """Text made of YAML's structure (anchors, aliases, merges, flow) never crashes the loader."""
    check(text, offline)


@PROPERTIES
@given(st.data())
def test_mutated_valid_config_ends_in_config_or_config_error(data: st.DataObject) -> None:
    """One random change to a valid config never raises anything but ConfigError."""
    document = yaml.safe_load(FULL.read_text())
    parent, key = _pick(data, document)
    action = data.draw(st.sampled_from(["delete", "replace", "rename"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = data.draw(values)
    elif isinstance(parent, dict):
        parent[data.draw(keys)] = parent.pop(key)
    check(yaml.safe_dump(document), offline=False)


def _pick(data: st.DataObject, document: dict[str, Any]) -> tuple[Any, Any]:
    """A random (container, key or index) in the document, at any depth."""
    parent: Any = document
    while True:
        choices = list(parent) if isinstance(parent, dict) else list(range(len(parent)))
        key = data.draw(st.sampled_from(choices))
        child = parent[key]
        if not isinstance(child, dict | list) or not child or data.draw(st.booleans()):
            return parent, key
        parent = child


@PROPERTIES
@given(st.floats(min_value=0, max_value=1e12), st.integers(0, 2**62))
def test_formatted_units_parse_back_to_the_same_value(seconds: float, size: int) -> None:
    """What `tinit check` prints for a duration or a size reads back as the same value."""
    assert parse_duration(format_duration(seconds)) == seconds
    assert parse_size(format_size(size)) == size


def test_every_signal_name_parses_back_to_its_number() -> None:
    """format_signal and parse_signal are inverses over every signal of this system."""
    for number in signal.valid_signals():
        assert parse_signal(format_signal(number)) == number
