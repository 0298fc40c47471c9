"""tinit end to end on a real cgroup v2 hierarchy, as PID 1 of a container.

These run only inside the .ci/cgv2-vm guest (``bash .ci/cgv2-tests``), whose
/sys/fs/cgroup offers cpu, io, memory and pids. Each test makes a fresh
``/sys/fs/cgroup/tinit-e2e-*`` cgroup and starts tinit in it the way a
container runtime would: ``unshare --pid --fork``
makes a PID namespace, its first process moves itself into the test cgroup,
``unshare --cgroup --mount`` gives it a private cgroup namespace, cgroup2 is
mounted again so the test cgroup is ``/``, and tinit is exec'd as PID 1. The
outer ``unshare`` stays in the guest's root cgroup (inside the delegated
cgroup, enabling controllers there would fail with EBUSY).

The test reads the same cgroups from outside, at
``/sys/fs/cgroup/tinit-e2e-*/...``, and maps the host's pids to the
namespace's through ``NSpid`` in ``/proc/PID/status``. Afterwards everything
in the test cgroup is killed and the cgroup removed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import cgv2, nsrun
from tests.svcrun import Result, control_path, write_config

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

pytestmark = [
    pytest.mark.skipif(
        os.environ.get("CGV2_VM") != "1",
        reason="needs the pure cgroup v2 guest: run them with `bash .ci/cgv2-tests`",
    ),
    pytest.mark.timeout(240),
]

MOUNT = Path("/sys/fs/cgroup")
MiB = 1 << 20
CONTROLLERS = {"cpu", "io", "memory", "pids"}
PYTHON = nsrun.PYTHON

# PID 1 of the new PID namespace moves itself into the test cgroup ($1), takes
# a cgroup namespace rooted there and a mount namespace to remount cgroup2 in,
# then execs the rest of its arguments (tinit).
_CONTAINER = (
    'echo 0 > "$1/cgroup.procs" && shift && exec unshare --cgroup --mount sh -c'
    ' \'umount /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"\' sh "$@"'
)


class ContainerTinit(nsrun.Tinit):
    """tinit as PID 1 of new PID, mount and cgroup namespaces, rooted at ``cgroup``.

    Like :class:`tests.nsrun.Tinit` (``pid``, ``signal``, ``wait``, ``kill``),
    but stdout and stderr are read as they come, so a test can wait for an
    event while tinit runs (:meth:`wait_event`).
    """

    def __init__(self, cgroup: Path, config: Path, *args: str) -> None:
        self.cgroup = cgroup
        argv = [
            "unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
            "sh", "-c", _CONTAINER, "sh", str(cgroup),
            *nsrun.tinit_argv("run", "--log-format", "json", "--log-level", "debug", *args),
            str(config),
        ]  # fmt: skip
        self.env = {
            **os.environ,
            "PYTHONPATH": str(nsrun.ROOT),
            "TINIT_CONTROL_SOCKET": control_path(),
        }
        self.proc = subprocess.Popen(
            argv,
            env=self.env,
            cwd=nsrun.ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        nsrun._live.append(self.proc)
        self.namespace = True
        self._lines: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._changed = threading.Condition()
        self._readers = [
            threading.Thread(target=self._drain, args=(name,), daemon=True) for name in self._lines
        ]
        for reader in self._readers:
            reader.start()
        self.pid = self._find_tinit()

    def _drain(self, name: str) -> None:
        stream = self.proc.stdout if name == "stdout" else self.proc.stderr
        assert stream is not None
        for raw in stream:
            with self._changed:
                self._lines[name].append(raw.decode(errors="replace"))
                self._changed.notify_all()

    def result(self, code: int = -1) -> Result:
        with self._changed:
            return Result(code, "".join(self._lines["stdout"]), "".join(self._lines["stderr"]))

    def wait_event(
        self, event: str, service: str | None = None, count: int = 1, timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        """Wait until tinit has logged ``event`` (for ``service``) ``count`` times; return them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self.result().named(event, service)
                if len(found) >= count:
                    return found
                self._check_alive(f"{count}x {event} of {service}", deadline, timeout)
                left = deadline - time.monotonic()
                self._changed.wait(min(max(left, 0), 0.5))

    def wait_output(self, service: str, count: int, timeout: float = 60.0) -> list[str]:
        """Wait until ``service`` has written ``count`` lines (through tinit's stdout)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(lines := self.result().output(service)) < count:
                self._check_alive(f"{count} lines of {service}", deadline, timeout)
                self._changed.wait(min(max(deadline - time.monotonic(), 0), 0.5))
            return lines

    def _check_alive(self, what: str, deadline: float, timeout: float) -> None:
        """Fail (with tinit's last events) once tinit has ended or the deadline passed."""
        ended = self.proc.poll() is not None and not any(r.is_alive() for r in self._readers)
        if ended or time.monotonic() > deadline:
            tail = "".join(self._lines["stderr"][-30:])
            why = f"tinit ended ({self.proc.returncode})" if ended else f"not within {timeout}s"
            raise AssertionError(f"{what}: {why}; log:\n{tail}")

    def wait(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the end; return (exit code, stdout, stderr)."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for reader in self._readers:
            reader.join(10)
        result = self.result(code)
        return code, result.stdout, result.stderr

    def finish(self, timeout: float = 60.0) -> Result:
        code, out, err = self.wait(timeout)
        return Result(code, out, err)


@pytest.fixture
def container(tmp_path: Path) -> Iterator[Callable[..., ContainerTinit]]:
    """Start tinit in a container of its own: ``container(config_body, *tinit_args)``."""
    made: list[ContainerTinit] = []

    def start(body: str, *args: str) -> ContainerTinit:
        cgroup = MOUNT / f"tinit-e2e-{uuid.uuid4().hex[:10]}"
        cgroup.mkdir()
        tinit = ContainerTinit(cgroup, write_config(tmp_path, body, f"c{len(made)}.yaml"), *args)
        made.append(tinit)
        return tinit

    yield start
    for tinit in made:
        tinit.kill()
        cgv2.destroy(tinit.cgroup)


# -- helpers --------------------------------------------------------------------


def ns_pid(host_pid: int) -> int | None:
    """The pid of ``host_pid`` in its innermost PID namespace (last NSpid field)."""
    try:
        status = Path(f"/proc/{host_pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    return None


def session_of(host_pid: int) -> int:
    return int(cgv2.read(f"/proc/{host_pid}/stat").rpartition(")")[2].split()[3])


def keyed(path: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in cgv2.read(path).splitlines())}


def wait_file(path: Path, timeout: float = 60.0) -> str:
    assert nsrun.wait_for(path.exists, timeout=timeout, interval=0.02), f"{path} never appeared"
    return path.read_text()


def write_script(tmp_path: Path, name: str, code: str) -> Path:
    path = tmp_path / name
    path.write_text(code)
    return path


def cgroup_dirs(path: Path) -> set[str]:
    return {p.name for p in path.iterdir() if p.is_dir()}


# -- layout --------------------------------------------------------------------------


def test_layout_as_in_a_container(container: Callable[..., ContainerTinit]) -> None:
    """tinit moves itself to /tinit, services get /services/NAME, ROOT keeps no process."""
    tinit = container(
        """
        version: 1
        services:
          probe: {command: "sh -c 'cat /proc/self/cgroup /proc/1/cgroup; exec sleep 60'"}
          web: {command: "sleep 60"}
        """
    )
    root = tinit.cgroup
    # The view from inside: the probe read its own cgroup and tinit's (PID 1).
    assert tinit.wait_output("probe", 2) == ["0::/services/probe", "0::/tinit"]
    (web,) = tinit.wait_event("service_ready", "web")
    # The view from outside the container.
    assert cgv2.pids_in(root) == []
    assert set(cgv2.read(root / "cgroup.subtree_control").split()) == CONTROLLERS
    assert set(cgv2.read(root / "services" / "cgroup.subtree_control").split()) == CONTROLLERS
    assert cgv2.pids_in(root / "tinit") == [tinit.pid]
    assert cgv2.read(f"/proc/{tinit.pid}/cgroup") == f"0::/{root.name}/tinit"
    (web_host,) = cgv2.pids_in(root / "services" / "web")
    assert ns_pid(web_host) == web["pid"]
    assert cgroup_dirs(root / "services") == {"probe", "web"}
    (ready,) = tinit.result().named("cgroups_ready")
    assert ready["root"] == "/sys/fs/cgroup"  # the container's view: ROOT is "/"
    assert set(ready["controllers"]) == CONTROLLERS
    tinit.signal(signal.SIGTERM)
    result = tinit.finish()
    assert result.code == 0
    assert not result.named("cgroups_unavailable")
    assert not (root / "services").exists()
    assert cgroup_dirs(root) == {"tinit"}


def test_exec_probe_runs_in_the_service_cgroup(
    container: Callable[..., ContainerTinit], tmp_path: Path
) -> None:
    """An exec probe counts against its service's limits: it joins the service's cgroup."""
    out = tmp_path / "probe"
    tinit = container(
        f"""
        version: 1
        services:
          app:
            command: "sleep 60"
            ready: {{exec: "sh -c 'cat /proc/self/cgroup > {out}'", interval: 50ms}}
        """
    )
    tinit.wait_event("service_ready", "app")
    assert out.read_text().splitlines() == ["0::/services/app"]
    tinit.signal(signal.SIGTERM)
    assert tinit.finish().code == 0


FORKER = """\
import os, sys, time
children = []
for _ in range(50):
    pid = os.fork()
    if pid == 0:
        time.sleep(120)
        os._exit(0)
    children.append(pid)
import json
procs = open("/sys/fs/cgroup/services/forker/cgroup.procs").read().split()
report = {"me": os.getpid(), "children": children, "procs": [int(p) for p in procs]}
with open(sys.argv[1] + ".tmp", "w") as f:
    json.dump(report, f)
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(120)
"""


def test_early_forks_are_all_in_the_service_cgroup(
    container: Callable[..., ContainerTinit], tmp_path: Path
) -> None:
    """50 children forked first thing: all 51 processes are in /services/forker."""
    script = write_script(tmp_path, "forker.py", FORKER)
    report = tmp_path / "forker.json"
    tinit = container(
        f"""
        version: 1
        services:
          forker: {{command: [PYTHON, "{script}", "{report}"]}}
        """
    )
    seen = json.loads(wait_file(report))
    expected = {seen["me"], *seen["children"]}
    assert len(expected) == 51
    assert set(seen["procs"]) == expected  # as the service itself sees its cgroup
    (starting,) = tinit.wait_event("service_starting", "forker")
    assert starting["pid"] == seen["me"]
    root = tinit.cgroup
    hosts = cgv2.pids_in(root / "services" / "forker")
    assert {ns_pid(pid) for pid in hosts} == expected  # as the host sees it
    assert cgv2.pids_in(root) == []
    assert cgv2.pids_in(root / "tinit") == [tinit.pid]
    tinit.signal(signal.SIGTERM)
    result = tinit.finish()
    assert result.code == 0
    assert result.named("service_stopped", "forker")
    assert not (root / "services").exists()


# -- limits ---------------------------------------------------------------------------

HOG = """\
import time
chunks = []
for _ in range(20):
    chunks.append(b"x" * (10 << 20))  # 200 MiB in 10 MiB steps, every page touched
    time.sleep(0.02)
time.sleep(120)
"""


def test_oom_kill_is_reported_and_restarted_by_policy(
    container: Callable[..., ContainerTinit], tmp_path: Path
) -> None:
    """Over memory.max: oom_kill event, exit reason oom, restart, give up; others untouched."""
    script = write_script(tmp_path, "hog.py", HOG)
    tinit = container(
        f"""
        version: 1
        services:
          hog:
            command: [PYTHON, "{script}"]
            limits: {{memory: 64M}}
            max_restarts: 1
            backoff: {{initial: 100ms}}
          bystander: {{command: "sleep 120"}}
        """
    )
    root = tinit.cgroup
    (bystander,) = tinit.wait_event("service_ready", "bystander")
    (bystander_host,) = cgv2.pids_in(root / "services" / "bystander")
    tinit.wait_event("service_gave_up", "hog", timeout=120)
    events = tinit.result()
    ooms = events.named("oom_kill", "hog")
    assert len(ooms) == 2
    for oom in ooms:
        assert oom["memory_max"] == 64 * MiB
        assert oom["kills"] >= 1
        assert oom["level"] == "error"
    exits = events.named("service_exited", "hog")
    assert [(e["reason"], e["signal"], e["exit_code"]) for e in exits] == [
        ("oom", "SIGKILL", None)
    ] * 2
    assert len(events.named("service_starting", "hog")) == 2
    assert len(events.named("service_restarting", "hog")) == 1
    # tinit and the other service are unaffected.
    assert not events.named("oom_kill", "bystander")
    assert [e["pid"] for e in events.named("service_starting", "bystander")] == [bystander["pid"]]
    assert nsrun.alive(bystander_host)
    assert cgv2.pids_in(root / "services" / "bystander") == [bystander_host]
    assert nsrun.alive(tinit.pid)
    assert tinit.proc.poll() is None
    assert not (root / "services" / "hog").exists()
    tinit.signal(signal.SIGTERM)
    result = tinit.finish()
    assert result.code == 0
    assert len(result.named("service_starting", "bystander")) == 1


BOMB = """\
import os, signal, sys
signal.signal(signal.SIGUSR1, signal.SIG_IGN)
if sys.argv[1] == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    try:
        os.fork()
    except OSError:
        pass
"""


@pytest.mark.parametrize("ignore_term", [False, True], ids=["dies-on-term", "ignores-term"])
def test_fork_bomb_is_contained_and_stopped(
    container: Callable[..., ContainerTinit], tmp_path: Path, ignore_term: bool
) -> None:
    """pids: 64 holds a fork bomb; tinit still answers; SIGTERM ends all of it in time."""
    script = write_script(tmp_path, "bomb.py", BOMB)
    stop_timeout = 3.0
    tinit = container(
        f"""
        version: 1
        settings: {{forward_signals: [SIGUSR1]}}
        services:
          bomb:
            command: [PYTHON, "{script}", "{int(ignore_term)}"]
            limits: {{pids: 64, cpu: 0.5}}   # cpu: leave half of the guest's one CPU to the rest
            stop_timeout: {stop_timeout}s
        """
    )
    path = tinit.cgroup / "services" / "bomb"
    tinit.wait_event("service_ready", "bomb")
    assert nsrun.wait_for(lambda: keyed(path / "pids.events")["max"] > 0, timeout=60)
    for _ in range(10):
        assert int(cgv2.read(path / "pids.current")) <= 64
        assert len(cgv2.pids_in(path)) <= 64
        time.sleep(0.1)
    # tinit is responsive: it takes a signal and logs it promptly.
    asked = time.monotonic()
    tinit.signal(signal.SIGUSR1)
    tinit.wait_event("signal_received", timeout=20)
    answered = time.monotonic() - asked
    assert answered < 10, f"tinit took {answered:.1f}s to take SIGUSR1"
    assert tinit.proc.poll() is None
    stopping = time.monotonic()
    tinit.signal(signal.SIGTERM)
    tinit.wait_event("service_stopped", "bomb", timeout=stop_timeout + 30)
    took = time.monotonic() - stopping
    assert not path.exists()  # removed, so it was empty, before service_stopped
    result = tinit.finish()
    assert took < stop_timeout + 10, f"the bomb took {took:.1f}s to stop"
    if ignore_term:
        assert took >= stop_timeout - 0.5
        assert len(result.named("service_killed", "bomb")) == 1
        assert result.code == 137  # README, exit codes: a stop that needed SIGKILL
    else:
        assert not result.named("service_killed", "bomb")
        assert result.code == 0


def test_cpu_limit_throttles_a_busy_loop(container: Callable[..., ContainerTinit]) -> None:
    """cpu: 0.2 -> cpu.max "20000 100000", and a busy loop gets throttled."""
    tinit = container(
        """
        version: 1
        services:
          spin: {command: "sh -c 'while :; do :; done'", limits: {cpu: 0.2}}
        """
    )
    path = tinit.cgroup / "services" / "spin"
    tinit.wait_event("service_ready", "spin")
    assert cgv2.read(path / "cpu.max") == "20000 100000"
    before, started = keyed(path / "cpu.stat"), time.monotonic()
    time.sleep(2)
    after, elapsed = keyed(path / "cpu.stat"), time.monotonic() - started
    assert after["nr_throttled"] > 0
    share = (after["usage_usec"] - before["usage_usec"]) / (elapsed * 1e6)
    assert share < 0.35, f"used {share:.2f} of a CPU"
    tinit.signal(signal.SIGTERM)
    assert tinit.finish().code == 0


# -- a daemon that escapes its process group ------------------------------------------

# Daemonizes (fork, setsid, fork), then the main process exits 0 as soon as
# the test has seen both pids and touched GO.
DAEMON = """\
import os, signal, sys, time
report, go, ignore_term = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
first = os.fork()
if first == 0:
    os.setsid()
    if os.fork() == 0:
        if ignore_term:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        with open(report + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(report + ".tmp", report)
        time.sleep(120)
    os._exit(0)
os.waitpid(first, 0)
deadline = time.monotonic() + 60
while not os.path.exists(go) and time.monotonic() < deadline:
    time.sleep(0.01)
"""


@pytest.mark.parametrize("ignore_term", [False, True], ids=["obeys-term", "ignores-term"])
def test_a_setsid_daemon_dies_with_its_service(
    container: Callable[..., ContainerTinit], tmp_path: Path, ignore_term: bool
) -> None:
    """A double-forked, setsid daemon is ended when its main process exits (restart: never)."""
    script = write_script(tmp_path, "daemon.py", DAEMON)
    report, go = tmp_path / "daemon.pid", tmp_path / "go"
    stop_timeout = 2.0
    tinit = container(
        f"""
        version: 1
        services:
          daemon:
            command: [PYTHON, "{script}", "{report}", "{go}", "{int(ignore_term)}"]
            restart: never
            stop_timeout: {stop_timeout}s
          bystander: {{command: "sleep 120"}}
        """
    )
    path = tinit.cgroup / "services" / "daemon"
    daemon = int(wait_file(report))
    (starting,) = tinit.wait_event("service_starting", "daemon")
    hosts = {ns_pid(pid): pid for pid in cgv2.pids_in(path)}
    assert set(hosts) == {starting["pid"], daemon}
    daemon_host, main_host = hosts[daemon], hosts[starting["pid"]]
    assert session_of(daemon_host) != session_of(main_host)  # out of reach of its group
    go.touch()
    (exited,) = tinit.wait_event("service_exited", "daemon")
    assert (exited["exit_code"], exited["signal"]) == (0, None)
    gone = nsrun.wait_for(
        lambda: not nsrun.alive(daemon_host) and not path.exists(), timeout=stop_timeout + 20
    )
    assert gone, f"daemon alive: {nsrun.alive(daemon_host)}, cgroup left: {path.exists()}"
    assert tinit.proc.poll() is None
    assert nsrun.alive(tinit.pid)
    tinit.signal(signal.SIGTERM)
    result = tinit.finish()
    assert result.code == 0
    killed = result.named("service_killed", "daemon")
    assert len(killed) == int(ignore_term)
    assert len(result.named("service_starting", "daemon")) == 1


# -- settings.cgroups: required ----------------------------------------------------------


def test_required_starts_and_writes_the_limits(container: Callable[..., ContainerTinit]) -> None:
    """cgroups: required works here; every limit lands in the service's cgroup only."""
    show = "cd /sys/fs/cgroup/services/$0 && cat memory.max cpu.max pids.max memory.oom.group"
    tinit = container(
        f"""
        version: 1
        settings: {{cgroups: required}}
        services:
          limited:
            command: ["sh", "-c", "{show}", "limited"]
            restart: never
            limits: {{memory: 64M, cpu: 0.5, pids: 100}}
            oom_group: true
          plain:
            command: ["sh", "-c", "{show}", "plain"]
            restart: never
        """
    )
    result = tinit.finish()
    assert result.code == 0, result.stderr
    assert result.output("limited") == [str(64 * MiB), "50000 100000", "100", "1"]
    assert result.output("plain") == ["max", "max 100000", "max", "0"]
    assert [e for e in result.events if e["level"] in ("warning", "error")] == []
    assert cgv2.read(tinit.cgroup / "memory.max") == "max"  # never on ROOT
    assert cgv2.read(tinit.cgroup / "pids.max") == "max"
    assert not (tinit.cgroup / "services").exists()


def test_a_reload_writes_new_limits_to_the_running_service(
    container: Callable[..., ContainerTinit], tmp_path: Path
) -> None:
    """Only limits changed: the same process runs on under the new ones."""
    body = """
        version: 1
        settings: {{cgroups: required}}
        services:
          limited:
            command: "sleep 60"
            limits: {{memory: {memory}, pids: {pids}}}
        """
    tinit = container(body.format(memory="64M", pids=100))
    tinit.wait_event("service_ready", "limited")
    leaf = tinit.cgroup / "services" / "limited"
    before = cgv2.pids_in(leaf)
    assert cgv2.read(leaf / "memory.max") == str(64 * MiB)
    write_config(tmp_path, body.format(memory="32M", pids=50), "c0.yaml")
    tinit.signal(signal.SIGHUP)
    (reloaded,) = tinit.wait_event("config_reloaded")
    assert reloaded["updated"] == ["limited"]
    assert cgv2.read(leaf / "memory.max") == str(32 * MiB)
    assert cgv2.read(leaf / "pids.max") == "50"
    assert cgv2.pids_in(leaf) == before
    tinit.signal(signal.SIGTERM)
    result = tinit.finish()
    assert result.code == 0, result.stderr
    assert len(result.named("service_starting", "limited")) == 1
