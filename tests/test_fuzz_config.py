"""Fuzzing the config loader: whatever a file holds, a Config or a ConfigError comes out.

A config file of any bytes, or a valid config of tests/configs/valid mutated
(lines dropped, swapped, repeated, re-indented; YAML syntax, aliases, tags,
NULs and huge numbers spliced in), is loaded as `tinit check` and `tinit run`
load it. The loader either returns a Config, whose normalized document can
be printed, or raises a ConfigError whose every problem is one line. Any
other exception is a bug: it would be a traceback and exit 70 from `check`,
and from a reload, a crash of PID 1.

CI runs 200 examples per target. A long run, 10,000 per target (tens of
minutes), which keeps the examples that fail in .hypothesis/ to replay them:

    TINIT_FUZZ=long .venv/bin/pytest -p no:cacheprovider tests/test_fuzz_config.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tinit.config import Config, load_config, to_document
from tinit.errors import ConfigError

_LONG = os.environ.get("TINIT_FUZZ") == "long"
_SLOW = [HealthCheck.too_slow, HealthCheck.filter_too_much]
FUZZ = (
    settings(max_examples=10_000, deadline=None, suppress_health_check=_SLOW)
    if _LONG
    # CI: a bounded run that leaves nothing behind (no example database)
    else settings(max_examples=200, deadline=None, suppress_health_check=_SLOW, database=None)
)
pytestmark = pytest.mark.timeout(0 if _LONG else 300)  # 0: a long run takes its time

HERE = Path(__file__).parent
VALID = [p.read_text() for p in sorted((HERE / "configs" / "valid").glob("*.yaml"))]
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/root", "PORT": "8000", "EMPTY": ""}

#: pieces of YAML and of values that reach the loader's corners
SPLICES = [
    "&a", "*a", "<<: *a", "<<: [*a, *a]", "!!binary", "!!timestamp", "!!bool", "!!int",
    "!!float", "!!set", "!!omap", "!!python/object:os.system", "!custom", "? [a]", "{", "}",
    "[", "]", "- ", ": ", "---", "...", "%YAML 1.1", '"\\0"', '"\\ud800"', '"\\x00"', "\t",
    "~", "null", "yes", "0x1F", "0o17", "1e999", "-.inf", ".nan", "9" * 5000, "²", "١٢",
    "${PORT}", "${NOPE}", "${EMPTY:-5s}", "$$", "/dev/zero", "/dev/null", "file:/tmp/x",
    "file:relative", "SIGRTMAX+1", "SIGKILL", "x-a: &a {a: [b, c]}", "'", '"', "#", "\\",
    "&& echo > /x | cat", "$(cat /x)", "`id`", "*.py", "\u2028", "\ufeff", "é",
    "[" * 100, "{a: " * 100,
]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A valid config, changed line by line."""
    lines = draw(st.sampled_from(VALID)).splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        if not lines:
            lines = [""]
        index = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        line = lines[index]
        match draw(st.integers(min_value=0, max_value=6)):
            case 0:
                del lines[index]
            case 1:
                lines.insert(index, lines[draw(st.integers(0, len(lines) - 1))])
            case 2:
                lines[index] = " " * draw(st.integers(0, 8)) + line.lstrip()
            case 3:
                cut = draw(st.integers(0, len(line)))
                lines[index] = line[:cut] + draw(st.sampled_from(SPLICES)) + line[cut:]
            case 4:
                cut = draw(st.integers(0, len(line)))
                lines[index] = line[:cut] + draw(st.text(max_size=8))
            case 5:
                key, colon, _ = line.partition(":")
                lines[index] = key + colon + " " + draw(st.sampled_from(SPLICES))
            case _:
                lines.insert(index, draw(st.sampled_from(SPLICES)))
    return "\n".join(lines) + "\n"


def _load(data: bytes, *, at_run: bool, offline: bool = False) -> Config | ConfigError:
    """What load_config makes of a file holding ``data``: a Config or a ConfigError."""
    with tempfile.TemporaryDirectory(prefix="tinit-fuzz-") as directory:
        path = os.path.join(directory, "services.yaml")
        with open(path, "wb") as file:
            file.write(data)
        try:
            return load_config(path, environ=ENV, offline=offline, at_run=at_run)
        except ConfigError as error:
            return error


def _check_outcome(outcome: Config | ConfigError) -> None:
    if isinstance(outcome, ConfigError):
        assert outcome.problems
        for problem in outcome.problems:
            assert "\n" not in str(problem), problem
        return
    for problem in outcome.warnings:
        assert "\n" not in str(problem), problem
    yaml.safe_dump(to_document(outcome), sort_keys=False)  # what `tinit check` prints


@FUZZ
@given(st.binary(max_size=400))
def test_any_bytes_give_a_config_or_a_config_error(data: bytes) -> None:
    _check_outcome(_load(data, at_run=False, offline=True))


@FUZZ
@given(mutated(), st.booleans())
def test_a_mutated_config_gives_a_config_or_a_config_error(text: str, at_run: bool) -> None:
    _check_outcome(_load(text.encode("utf-8", "surrogatepass"), at_run=at_run))


@FUZZ
@given(mutated())
def test_check_accepts_nothing_that_run_rejects(text: str) -> None:
    """A config `tinit check` passes (with no unset variable warned of) `tinit run` loads."""
    data = text.encode("utf-8", "surrogatepass")
    checked = _load(data, at_run=False)
    if isinstance(checked, ConfigError):
        return
    if any("is not set here" in p.message for p in checked.warnings):
        return  # the documented difference: run refuses what check only warns of
    ran = _load(data, at_run=True)
    assert not isinstance(ran, ConfigError), ran
