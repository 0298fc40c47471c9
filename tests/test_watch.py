"""``tinit status --watch``: the pure frame, and the real view in a real terminal (tmux)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.nsrun import ROOT, Tinit, tinit_argv, wait_for
from tests.svcrun import control_path, finish, start, write_config
from tinit import watch
from tinit.client import format_status
from tinit.errors import ControlError
from tinit.watch import Sample, View

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.timeout(120)

# -- the frame, pure ------------------------------------------------------------------


def service(name: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": name,
        "state": "running",
        "pid": 42,
        "uptime": 75.5,
        "restarts": 3,
        "last_exit": {"exit_code": 1, "signal": None},
        "ready": True,
        "memory": 5 * 1024 * 1024,
        "pids": 2,
        "cpu_usec": 1_000_000,
    }
    return {**base, **fields}


def test_cpu_percent_is_the_counter_growth_over_the_time_between_samples() -> None:
    """2 s apart, 1 s of CPU used is 50%; 3 s used is 150% (more than one core)."""
    before = Sample(10.0, (service("a"), service("b"), service("gone"), service("new-cg")))
    after = Sample(
        12.0,
        (
            service("a", cpu_usec=2_000_000),
            service("b", cpu_usec=4_000_000),
            service("new-cg", cpu_usec=10),  # its cgroup was made anew: no figure
            service("bare", cpu_usec=None),
        ),
    )
    assert watch.cpu_percent(before, after) == {"a": 50.0, "b": 150.0}
    assert watch.cpu_percent(None, after) == {}  # the first refresh has nothing to compare
    assert watch.cpu_percent(after, after) == {}


def test_table_columns_line_up_and_show_dashes_for_what_is_missing() -> None:
    stopped = service(
        "worker", state="stopped", pid=None, uptime=None, memory=None, pids=None, cpu_usec=None
    )
    lines = watch.table_lines([service("web"), stopped], {"web": 12.345})
    header, web, worker = lines
    assert header.split() == list(watch.COLUMNS)
    for column in ("STATE", "RESTARTS", "CPU", "MEMORY"):
        at = header.index(column)
        assert web[at - 1] == " " and web[at] != " "  # each cell starts under its heading
    assert web.split() == ["web", "running", "42", "1m15s", "3", "1", "yes", "12.3%", "5.0M", "2"]
    assert worker.split() == ["worker", "stopped", "-", "-", "3", "1", "yes", "-", "-", "-"]


def test_an_sd_notify_status_is_a_last_column_of_its_own() -> None:
    """Shown only when a service has one; a terminal escape in it is defused."""
    said = {**service("db"), "status_text": "ready: \x1b[2J accepting connections"}
    header, db, web = watch.table_lines([said, service("web")], {})
    assert header.split() == [*watch.COLUMNS, "STATUS"]
    assert db.endswith("ready: ?[2J accepting connections")
    assert web.endswith(" -")
    assert "STATUS" not in watch.table_lines([service("web")], {})[0]
    table = format_status([said, service("web")])
    assert table.splitlines()[0].split()[-1] == "STATUS"
    assert "\x1b" not in table and "accepting connections" in table


def test_render_cuts_lines_to_the_width_and_rows_to_the_height() -> None:
    services = tuple(service(f"svc{i:03d}") for i in range(200))
    view = View("title", Sample(1.0, services))
    lines = watch.render(view, 40, 10)
    assert len(lines) == 10
    assert all(len(line) <= 40 for line in lines)
    assert lines[0] == "title"
    assert lines[1] == "200 services: 200 running, 200 ready, 60"
    assert lines[2].startswith("NAME")
    assert [line.split()[0] for line in lines[3:9]] == [f"svc{i:03d}" for i in range(6)]
    assert lines[9].startswith("... and 194 more")
    wide = watch.render(view, 300, 300)
    assert len(wide) == 2 + 1 + 200  # title, summary, header, every row
    assert max(len(line) for line in wide) < 300  # nothing cut when it fits


def test_render_keeps_the_last_table_under_an_error() -> None:
    error = "no tinit is listening on /run/tinit/control.sock (is it running? is the path right)"
    view = View("t", Sample(1.0, (service("web"),)), error=error)
    lines = watch.render(view, 200, 30)
    assert lines[1] == f"refresh failed, retrying: {error}"  # whole, as wide as the screen
    assert lines[3].startswith("web ")
    assert watch.render(View("t", error="boom"), 20, 30) == ["t", "refresh failed, retr"]


def test_render_shows_nothing_that_could_drive_the_terminal() -> None:
    """A reply is data: escapes become ``?``, long names are cut, odd types become ``-``."""
    odd = service("x" * 40, state="\x1b[2Jrunning", pid="12", uptime=float("nan"), memory=True)
    lines = watch.render(View("t", Sample(1.0, (odd,))), 200, 10)
    assert not any("\x1b" in line for line in lines)
    row = lines[3].split()
    assert row[0] == "x" * 23 + "~"
    assert row[1] == "?[2Jrunning"
    assert row[2:4] == ["-", "-"]  # a pid that is not a number, an uptime that is not finite


def test_parse_sample_refuses_what_is_not_a_list_of_services() -> None:
    assert watch.parse_sample([{"name": "a"}], 3.0) == Sample(3.0, ({"name": "a"},))
    for bad in ({"name": "a"}, ["a"], None):
        with pytest.raises(ControlError):
            watch.parse_sample(bad, 3.0)


def test_the_view_imports_no_trio() -> None:
    """Like the rest of the client, ``--watch`` must start quickly, so it never loads trio."""
    code = "import sys, tinit.watch; print(sorted(m for m in sys.modules if 'trio' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.stdout == "[]\n", done.stderr


# -- the real view --------------------------------------------------------------------


class Pane:
    """One tmux pane on a tmux server of its own, killed with everything in it."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.server = str(tmp_path / "tmux.sock")  # in tmp_path, so nothing is left behind

    def tmux(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.server, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout

    def run(self, socket: str, *args: str, width: int = 120, height: int = 30) -> None:
        """Run ``tinit ARGS`` in the pane, noting the terminal's settings before and after."""
        script = self.tmp / "pane.sh"
        env = "".join(
            f"export {key}='{value}'\n"
            for key, value in (("TINIT_CONTROL_SOCKET", socket), ("PYTHONPATH", str(ROOT)))
        )
        argv = " ".join(tinit_argv(*args))
        # Ctrl-C goes to the whole foreground group: the script's shell must
        # outlive it to tell the exit code (`trap :` still lets tinit have it).
        script.write_text(
            f"{env}cd {ROOT}\ntrap : INT\nstty -g > {self.tmp}/stty.before\n{argv}\n"
            f'echo "EXIT=$?"\nstty -g > {self.tmp}/stty.after\nexec sleep 600\n'
        )
        self.tmux("new-session", "-d", "-x", str(width), "-y", str(height), f"sh {script}")

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p")

    def flag(self, name: str) -> str:
        return self.tmux("display-message", "-p", f"#{{{name}}}").strip()

    def viewer(self) -> int:
        """The pid of the command the pane's shell runs."""
        shell = int(self.flag("pane_pid"))
        return int(Path(f"/proc/{shell}/task/{shell}/children").read_text().split()[0])

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.tmux("kill-server")


@pytest.fixture
def pane(tmp_path: Path) -> Iterator[Pane]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (.ci/setup installs it): no terminal to watch in")
    found = Pane(tmp_path)
    try:
        yield found
    finally:
        found.close()


def cell(screen: str, name: str, column: str) -> str:
    """The text under ``column`` in the row of service ``name``."""
    lines = screen.splitlines()
    header = next(line for line in lines if line.startswith("NAME "))
    row = next(line for line in lines if line.split()[:1] == [name])
    at = header.index(column)
    return row[at:].split()[0]


def restarts_in_all(screen: str) -> int:
    found = re.search(r"(\d+) restarts in all", screen)
    assert found, screen
    return int(found.group(1))


def stop_and_check_restored(pane: Pane, tinit: Tinit, how: str) -> None:
    """Ctrl-C, ``q`` or SIGTERM end the view with 0 and leave the terminal as they found it."""
    if how == "SIGTERM":
        os.kill(pane.viewer(), signal.SIGTERM)
    else:
        pane.tmux("send-keys", how)
    assert wait_for(lambda: "EXIT=" in pane.screen(), timeout=10), pane.screen()
    assert "EXIT=0" in pane.screen()
    assert "Traceback" not in pane.screen()
    assert pane.flag("alternate_on") == "0"  # back on the normal screen
    assert pane.flag("cursor_flag") == "1"  # the cursor shows again
    assert pane.flag("wrap_flag") == "1"  # long lines wrap again
    assert wait_for(lambda: (pane.tmp / "stty.after").exists())
    before, after = ((pane.tmp / f"stty.{when}").read_text() for when in ("before", "after"))
    assert before == after  # echo and line editing are back
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0


STACK = """
version: 1
services:
  web:
    command: "sleep 600"
  busy:
    command: [PYTHON, -c, "import time\\nwhile True:\\n  t = time.monotonic()\\n  while time.monotonic() - t < 0.05: pass\\n  time.sleep(0.2)"]
  flappy:
    command: "sh -c 'sleep 0.3; exit 3'"
    backoff: {initial: 0s, max: 1s}
    max_restarts: null
"""


def client(tinit: Tinit, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        tinit_argv(*args), env=tinit.env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )


def in_cgroups(tinit: Tinit) -> bool:
    """Whether tinit put its services in cgroups of their own (it says so at start)."""
    return '"cgroups_ready"' in tinit.stderr_so_far()


def test_watch_redraws_the_table_in_a_terminal_and_restores_it(tmp_path: Path, pane: Pane) -> None:
    """Services, states and a rising restart count; CPU % where there is a cgroup; Ctrl-C."""
    tinit = start(write_config(tmp_path, STACK))
    pane.run(tinit.env["TINIT_CONTROL_SOCKET"], "status", "--watch")
    assert wait_for(lambda: "flappy" in pane.screen(), timeout=20), pane.screen()
    assert pane.flag("alternate_on") == "1"
    first = pane.screen()
    assert cell(first, "web", "STATE") == "running"
    assert cell(first, "web", "READY") == "yes"
    assert "refresh failed" not in first
    before = int(cell(first, "flappy", "RESTARTS"))
    assert wait_for(lambda: int(cell(pane.screen(), "flappy", "RESTARTS")) > before, timeout=10)
    second = pane.screen()
    assert first.splitlines()[0] != second.splitlines()[0]  # the clock moved: a new refresh
    assert cell(second, "flappy", "LAST-EXIT") == "3"
    if in_cgroups(tinit):
        assert cell(second, "busy", "CPU").endswith("%")
        assert cell(second, "web", "CPU") == "0.0%"
    else:
        assert cell(second, "busy", "CPU") == "-"
    stop_and_check_restored(pane, tinit, "C-c")


def test_watch_cuts_the_table_to_a_narrow_terminal(tmp_path: Path, pane: Pane) -> None:
    tinit = start(write_config(tmp_path, STACK))
    pane.run(tinit.env["TINIT_CONTROL_SOCKET"], "status", "--watch", width=40, height=5)
    assert wait_for(lambda: "more" in pane.screen(), timeout=20), pane.screen()
    lines = pane.screen().splitlines()
    assert max(len(line) for line in lines) <= 40
    assert lines[2].startswith("NAME")
    pane.tmux("resize-window", "-x", "120", "-y", "30")  # SIGWINCH: redrawn at once, all rows
    assert wait_for(lambda: "flappy" in pane.screen(), timeout=0.9), pane.screen()
    stop_and_check_restored(pane, tinit, "SIGTERM")


def test_a_failed_refresh_is_a_line_and_the_next_one_retries(tmp_path: Path, pane: Pane) -> None:
    """No tinit yet, then a tinit, then none again: the view tells each and carries on."""
    socket = control_path()
    pane.run(socket, "status", "--watch")
    assert wait_for(lambda: "refresh failed, retrying: no tinit" in pane.screen(), timeout=20)
    config = write_config(tmp_path, 'version: 1\nservices: {web: {command: "sleep 600"}}')
    tinit = start(config, env={"TINIT_CONTROL_SOCKET": socket})
    assert wait_for(lambda: "1 service: 1 running" in pane.screen(), timeout=20), pane.screen()
    assert cell(pane.screen(), "web", "STATE") == "running"
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0
    assert wait_for(lambda: "refresh failed, retrying" in pane.screen(), timeout=20)
    assert cell(pane.screen(), "web", "STATE") == "running"  # the last table stays up
    pane.tmux("send-keys", "C-c")
    assert wait_for(lambda: "EXIT=0" in pane.screen(), timeout=10), pane.screen()
    assert pane.flag("alternate_on") == "0"


def test_without_a_terminal_watch_prints_one_table(tmp_path: Path) -> None:
    """Piped, ``--watch`` is plain ``tinit status``: one table, the usual exit code."""
    tinit = start(write_config(tmp_path, 'version: 1\nservices: {web: {command: "sleep 600"}}'))
    assert wait_for(lambda: client(tinit, "status", "web").returncode == 0)
    done = client(tinit, "status", "--watch")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("NAME") == 1
    assert "\x1b" not in done.stdout
    assert done.stdout.splitlines()[1].split()[:2] == ["web", "running"]
    both = client(tinit, "status", "--watch", "--json")
    assert both.returncode == 2
    assert "--watch" in both.stderr
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0


def test_watch_keeps_up_with_200_restarting_services(tmp_path: Path, pane: Pane) -> None:
    """Five refreshes in a row, each whole and without error, while 200 services restart."""
    body = "version: 1\nservices:\n" + "".join(
        f"  s{i:03d}:\n    command: \"sh -c 'sleep 0.2; exit 1'\"\n"
        "    backoff: {initial: 0s, max: 1s}\n    max_restarts: null\n"
        for i in range(200)
    )
    tinit = start(write_config(tmp_path, body), "--log-level", "warning")
    pane.run(tinit.env["TINIT_CONTROL_SOCKET"], "status", "--watch")
    clocks: dict[str, int] = {}
    deadline = time.monotonic() + 30  # a status under this storm can take seconds
    while len(clocks) < 5 and time.monotonic() < deadline:
        screen = pane.screen()
        if "200 services" in screen:
            assert "refresh failed" not in screen, screen
            assert "Traceback" not in screen, screen
            clocks[screen.splitlines()[0]] = restarts_in_all(screen)
        time.sleep(0.2)
    assert len(clocks) >= 5, clocks  # five refreshes seen, each a new second
    assert pane.screen().splitlines()[-1].startswith("... and ")  # cut to the 30 rows
    counts = list(clocks.values())
    assert counts == sorted(counts) and counts[-1] > counts[0], counts
    stop_and_check_restored(pane, tinit, "q")


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroups", "no-cgroups"])
def test_the_status_reply_has_cpu_usec(tmp_path: Path, cgroups: bool) -> None:
    """``cpu_usec`` is the CPU time of the service's cgroup; null without one."""
    burn = (
        "import time\\nt = time.process_time()\\nwhile time.process_time() - t < 0.2: pass"
        "\\nprint('burnt', flush=True)\\ntime.sleep(600)"
    )
    body = f"""
    version: 1
    services:
      web: {{command: "sleep 600"}}
      burn: {{command: [PYTHON, -c, "{burn}"]}}
    """
    tinit = start(write_config(tmp_path, body), *(() if cgroups else ("--no-cgroups",)))
    assert wait_for(lambda: "burnt" in client(tinit, "logs", "burn").stdout, timeout=30)
    done = client(tinit, "status", "--json")
    found = {s["name"]: s["cpu_usec"] for s in json.loads(done.stdout)}
    if cgroups and in_cgroups(tinit):
        # 0.2 s of burning plus the interpreter's start; sleep uses next to nothing
        assert 200_000 <= found["burn"] < 2_000_000, found
        assert 0 <= found["web"] < 200_000, found
    elif cgroups:
        pytest.skip("tinit found no cgroup v2 here to put services in")
    else:
        assert found == {"web": None, "burn": None}
    tinit.signal(signal.SIGTERM)
    assert finish(tinit).code == 0
