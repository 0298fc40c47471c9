"""The image of Dockerfile.example, run as a container runtime would run it, without Docker.

``tests/container/build-rootfs`` makes a Debian bookworm root filesystem with
tinit installed from wheels into /opt/tinit, as the Dockerfile does (cached:
only the first build is slow). ``tests/container/run-container`` runs it in
new PID, mount, UTS, IPC, network and cgroup namespaces on a throw-away
overlay, pivot_root's into it and execs the image's ENTRYPOINT, ``tinit run``,
as PID 1. The tests then act as ``docker stop`` does: SIGTERM to the
container's PID 1 from the host, and the exit code is the container's.

The only reason to skip is a Debian mirror that can't be reached; with
``TINIT_CONTAINER_TEST_REQUIRED=1`` (as ``.ci/container-test`` sets it) that
fails instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

HERE = Path(__file__).resolve().parent / "container"
BUILD = HERE / "build-rootfs"
RUN = HERE / "run-container"
CACHE = Path(os.environ.get("TINIT_TEST_CACHE", "/var/cache/tinit-test"))
SCRATCH = CACHE / "run"
MIRROR_UNREACHABLE = 3  # build-rootfs's exit code when debootstrap can't reach the mirror
BUILD_TIMEOUT = 1200.0
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NAMESPACES = ("pid", "mnt", "net", "uts", "ipc")

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT + 300)


def _required() -> bool:
    return os.environ.get("TINIT_CONTAINER_TEST_REQUIRED", "") not in ("", "0")


@pytest.fixture(scope="module")
def image() -> str:
    """The image's overlay lower layers (top first), built or reused by build-rootfs."""
    started = time.monotonic()
    # A session of its own, so that a timeout ends debootstrap, apt and pip too.
    with subprocess.Popen(
        [str(BUILD)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as build:
        try:
            stdout, stderr = build.communicate(timeout=BUILD_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(build.pid, signal.SIGKILL)
            build.communicate()
            pytest.fail(f"build-rootfs took more than {BUILD_TIMEOUT:.0f}s")
    done = subprocess.CompletedProcess(build.args, build.returncode, stdout, stderr)
    elapsed = time.monotonic() - started
    if done.returncode == MIRROR_UNREACHABLE:
        reason = f"no container test: {done.stderr.strip().splitlines()[-1]}"
        if _required():
            pytest.fail(f"{reason} (and TINIT_CONTAINER_TEST_REQUIRED is set)")
        pytest.skip(reason)
    if done.returncode != 0:
        pytest.fail(f"build-rootfs failed ({done.returncode}) after {elapsed:.0f}s:\n{done.stderr}")
    lower = done.stdout.strip()
    assert lower and all(Path(layer).is_dir() for layer in lower.split(":")), done.stdout
    return lower


class Container:
    """One run of run-container: ``init`` is the container's PID 1 as the host sees it."""

    def __init__(
        self,
        image: str,
        *args: str,
        hostname: str,
        volumes: tuple[str, ...] = (),
        env: tuple[str, ...] = (),
        user: str | None = None,
    ):
        self.image, self.hostname = image, hostname
        # --pdeathsig: should the test itself die, unshare dies with it, and
        # the whole container with unshare.
        argv = ["setpriv", "--pdeathsig", "KILL", str(RUN), "--hostname", hostname]
        argv += ["-e", "TINIT_LOG_FORMAT=json"]
        for volume in volumes:
            argv += ["-v", volume]
        for variable in env:
            argv += ["-e", variable]
        if user is not None:
            argv += ["--user", user]
        argv += [image, *args]
        # Files, not pipes: tinit must never wait for the test to read.
        self._out: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self._err: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err
        )
        try:
            self.init = self._find_init()
            self.namespaces = {
                ns: os.stat(f"/proc/{self.init}/ns/{ns}").st_ino for ns in NAMESPACES
            }
        except BaseException:
            self.kill()
            self.close()
            raise

    def _find_init(self, timeout: float = 10.0) -> int:
        """The child of unshare: the container's PID 1.

        run-container execs unshare once it has checked its arguments; until
        then, the children of its pid are the script's own commands.
        """
        pid = self.proc.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}/comm").read_text().strip() == "unshare":
                    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
                    if children:
                        return int(children[0])
            if self.proc.poll() is not None:
                raise AssertionError(f"run-container exited early:\n{self.stderr()}")
            time.sleep(0.01)
        raise AssertionError("the container's PID 1 did not appear")

    def stdout(self) -> str:
        return _read(self._out)

    def stderr(self) -> str:
        return _read(self._err)

    def events(self) -> list[dict[str, Any]]:
        """tinit's own events so far (TINIT_LOG_FORMAT=json: one object per line)."""
        found = []
        for line in self.stderr().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    found.append(json.loads(line))
        return found

    def event(self, name: str, **fields: object) -> list[dict[str, Any]]:
        return [
            e
            for e in self.events()
            if e.get("event") == name and all(e.get(k) == v for k, v in fields.items())
        ]

    def exec(
        self, *argv: str, env: tuple[str, ...] = (), timeout: float = 15.0, user: int = 0
    ) -> subprocess.CompletedProcess[str]:
        """``docker exec``: run argv in every namespace and the root of the container."""
        enter = ["nsenter", "-t", str(self.init), "-m", "-u", "-i", "-n", "-p", "-C", "-r", "-w"]
        if user:
            enter += ["-S", str(user), "-G", str(user)]
        return subprocess.run(
            [*enter, "--", "/usr/bin/env", "-i", f"PATH={IMAGE_PATH}", *env, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if self.proc.poll() is not None:
                raise AssertionError(f"the container ended while waiting for {what}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} after {timeout:.0f}s:\n{self.log()}")
            time.sleep(0.05)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL unshare; --kill-child takes the whole container with it."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=10)

    def log(self) -> str:
        return f"--- stdout\n{self.stdout()}--- stderr\n{self.stderr()}"

    def close(self) -> None:
        self._out.close()
        self._err.close()


def _read(file: IO[bytes]) -> str:
    file.seek(0)
    return file.read().decode(errors="replace")


@pytest.fixture
def run(image: str) -> Iterator[Callable[..., Container]]:
    started: list[Container] = []

    def start(*args: str, hostname: str = "tinit-ct", **options: Any) -> Container:
        container = Container(image, *args, hostname=hostname, **options)
        started.append(container)
        return container

    yield start
    for container in started:
        container.kill()
        container.close()


def all_ready(container: Container, *names: str) -> Callable[[], bool]:
    return lambda: all(container.event("service_ready", service=n) for n in names)


def uids(pid: int) -> list[str]:
    """The real, effective, saved and filesystem uids of a host pid."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(line.split()[1:] for line in status if line.startswith("Uid:"))


def processes_in(namespaces: dict[str, int]) -> list[str]:
    """Host processes that are still in one of the container's namespaces."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for ns, inode in namespaces.items():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / ns).st_ino == inode:
                    found.append(f"{entry.name} ({ns})")
    return found


def assert_nothing_left(container: Container) -> None:
    """No process in the container's namespaces, no mount of it, the image unchanged."""
    assert container.proc.poll() is not None
    deadline = time.monotonic() + 5
    while (left := processes_in(container.namespaces)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still in the container's namespaces: {left}"
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(CACHE) not in mounts, mounts
    assert not any(SCRATCH.iterdir()), "the container wrote to the host's scratch directory"
    # What the container wrote (its control socket, its hostname) went to its
    # throw-away upper layer, never into the cached image.
    for layer in map(Path, container.image.split(":")):
        assert not (layer / "run/tinit").exists(), f"the container wrote to {layer}"
        with contextlib.suppress(FileNotFoundError):
            hostname = (layer / "etc/hostname").read_text()
            assert container.hostname not in hostname, f"the container wrote to {layer}"


def test_runs_as_pid1_and_stops_on_sigterm(run: Callable[..., Container]) -> None:
    container = run(hostname="tinit-ct")
    container.wait_for("web and worker ready", all_ready(container, "web", "worker"))
    # The worker talks to the web server over the container's own loopback.
    container.wait_for("the worker's first fetch", lambda: "worker | fetched" in container.stdout())

    # PID 1 inside: the host sees its pid in the namespace, and the container sees tinit.
    nspid = next(
        line.split()[1:]
        for line in Path(f"/proc/{container.init}/status").read_text().splitlines()
        if line.startswith("NSpid:")
    )
    assert nspid == [str(container.init), "1"]
    cmdline = container.exec("cat", "/proc/1/cmdline")
    assert cmdline.returncode == 0, cmdline.stderr
    assert cmdline.stdout.split("\0")[1:3] == ["/usr/local/bin/tinit", "run"], cmdline.stdout
    host = container.exec("cat", "/proc/sys/kernel/hostname")
    assert host.stdout.strip() == "tinit-ct"

    # The image's HEALTHCHECK: exit 0 once every service is running and ready.
    container.wait_for(
        "tinit status to exit 0", lambda: container.exec("tinit", "status").returncode == 0
    )
    status = container.exec("tinit", "status", "--json")
    assert {s["name"]: s["state"] for s in json.loads(status.stdout)} == {
        "web": "running",
        "worker": "running",
    }

    # Without cgroup delegation (cgroup2 read-only, as by default in Docker):
    # one warning, and the services still run.
    warnings = [e for e in container.events() if e.get("level") == "warning"]
    assert [e["event"] for e in warnings] == ["cgroups_unavailable"], warnings

    # docker stop: SIGTERM to PID 1 from outside.
    stopped = time.monotonic()
    os.kill(container.init, signal.SIGTERM)
    code = container.wait(timeout=20)
    elapsed = time.monotonic() - stopped
    assert code == 0, container.log()
    assert elapsed < 5, f"the shutdown took {elapsed:.1f}s"
    assert container.event("shutdown_finished", exit_code=0), container.log()
    assert container.event("service_stopped", service="web")
    assert container.event("service_stopped", service="worker")
    assert_nothing_left(container)


STUBBORN = """\
version: 1
services:
  stubborn:
    # Ignores SIGTERM, then says it is ready.
    command: [python3, -c, "import signal, pathlib, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); pathlib.Path('/tmp/stubborn-ready').touch(); time.sleep(600)"]
    ready: {exec: [test, -e, /tmp/stubborn-ready], interval: 100ms}
    stop_timeout: 1s
  polite:
    command: [sleep, infinity]
"""


def test_service_ignoring_sigterm_is_killed_after_stop_timeout(
    run: Callable[..., Container], tmp_path: Path
) -> None:
    config = tmp_path / "services.yaml"
    config.write_text(STUBBORN)
    # As `docker run -v ./services.yaml:/etc/tinit/services.yaml:ro`.
    container = run(volumes=(f"{config}:/etc/tinit/services.yaml:ro",))
    container.wait_for("both services ready", all_ready(container, "stubborn", "polite"))

    stopped = time.monotonic()
    os.kill(container.init, signal.SIGTERM)
    code = container.wait(timeout=20)
    elapsed = time.monotonic() - stopped
    assert code == 137, container.log()
    assert 1 <= elapsed < 6, f"the shutdown took {elapsed:.1f}s with a 1s stop_timeout"
    assert container.event("service_exited", service="stubborn", signal="SIGKILL"), container.log()
    assert container.event("service_exited", service="polite", signal="SIGTERM"), container.log()
    assert container.event("shutdown_finished", exit_code=137), container.log()
    assert_nothing_left(container)


def test_killing_the_runtime_ends_the_container(run: Callable[..., Container]) -> None:
    """SIGKILL to run-container's process (the runtime dying) leaves nothing behind."""
    container = run()
    container.wait_for("web and worker ready", all_ready(container, "web", "worker"))
    container.kill()
    assert_nothing_left(container)


def test_runs_as_a_non_root_user(run: Callable[..., Container]) -> None:
    """Dockerfile.example's nonroot target: USER 10001:10001, the control socket in /tmp."""
    socket = "TINIT_CONTROL_SOCKET=/tmp/tinit/control.sock"
    container = run(user="10001:10001", env=(socket,))
    container.wait_for("web and worker ready", all_ready(container, "web", "worker"))
    assert uids(container.init) == ["10001"] * 4
    services = Path(f"/proc/{container.init}/task/{container.init}/children").read_text().split()
    assert len(services) == 2
    assert all(uids(int(pid)) == ["10001"] * 4 for pid in services)
    # The HEALTHCHECK finds tinit through the same variable, and runs as the
    # image's user: root's client would not trust a server of uid 10001.
    container.wait_for(
        "tinit status to exit 0",
        lambda: container.exec("tinit", "status", env=(socket,), user=10001).returncode == 0,
    )
    as_root = container.exec("tinit", "status", env=(socket,))
    assert as_root.returncode == 1
    assert "runs as uid 10001, neither root nor you" in as_root.stderr
    warnings = [e["event"] for e in container.events() if e.get("level") == "warning"]
    assert warnings == ["cgroups_unavailable"], container.log()

    os.kill(container.init, signal.SIGTERM)
    assert container.wait(timeout=20) == 0, container.log()
    assert_nothing_left(container)
