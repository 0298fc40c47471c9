"""Helpers for services-mode tests: write a config, run tinit on it as PID 1, read its events."""

from __future__ import annotations

import json
import os
import tempfile
import textwrap
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.nsrun import PYTHON, Tinit

if TYPE_CHECKING:
    from pathlib import Path


def write_config(tmp_path: Path, body: str, name: str = "services.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body).replace("PYTHON", PYTHON))
    return path


def control_path() -> str:
    """A control socket path of its own (AF_UNIX paths must stay under 108 bytes)."""
    return os.path.join(tempfile.mkdtemp(prefix="tinit-", dir="/tmp"), "control.sock")


def start(config: Path, *args: str, **kwargs: Any) -> Tinit:
    """tinit on ``config`` as PID 1, with JSON debug events and a control socket of its own."""
    env = {"TINIT_CONTROL_SOCKET": control_path(), **kwargs.pop("env", {})}
    return Tinit(
        "run", "--log-format", "json", "--log-level", "debug", *args, str(config), env=env, **kwargs
    )


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def named(self, event: str, service: str | None = None) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e.get("event") == event and (service is None or e.get("service") == service)
        ]

    def output(self, service: str, stream: str = "stdout") -> list[str]:
        """The lines ``service`` wrote, from tinit's prefixed output."""
        text = self.stdout if stream == "stdout" else self.stderr
        found = []
        for line in text.splitlines():
            name, sep, body = line.partition(" | ")
            if sep and name.rstrip() == service:
                found.append(body)
        return found

    def order(self, event: str) -> list[str]:
        """Services in the order they logged ``event``."""
        return [e["service"] for e in self.events if e.get("event") == event]


def finish(tinit: Tinit, timeout: float = 30.0) -> Result:
    code, out, err = tinit.wait(timeout)
    return Result(code, out, err)


def run_config(tmp_path: Path, body: str, timeout: float = 30.0, **kwargs: Any) -> Result:
    return finish(start(write_config(tmp_path, body), **kwargs), timeout)
