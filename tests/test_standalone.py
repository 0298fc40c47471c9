"""The standalone tinit (``dist/tinit-linux-ARCH``) as PID 1 of an image with no Python.

The image is what a Node, Go or Java image is to tinit: glibc and a shell,
nothing of Python. It is made here in a temporary directory: busybox-static
for the userland, the standalone's directory at /opt/tinit (as
``COPY --from=... /opt/tinit /opt/tinit`` puts it), and the glibc libraries
the standalone's files link against, found by ``ldd``. Then
``tests/container/run-container`` runs it the way the container test does
(new namespaces, an overlay, pivot_root, tinit as PID 1).

Besides what tinit does (one command, services, SIGTERM, ``tinit status``),
the tests check what the freezing must not change: PID 1 is the standalone's
own executable with one thread and no child but the services (PyInstaller's
one-directory launcher re-executes itself in place; a one-file build would
show up here as a launcher process waiting on a Python child), and the
services get the environment tinit was given, without the launcher's
LD_LIBRARY_PATH or ``_PYI_*`` variables.

``bash .ci/build`` makes the standalone. Without it these tests skip; with
``TINIT_STANDALONE_REQUIRED=1`` (as ``.ci/test`` sets it) they fail instead.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.test_container import Container, processes_in

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
STANDALONE = ROOT / "dist" / f"tinit-linux-{platform.machine()}"
BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "env",
    "true",
    "cat",
    "echo",
    "sleep",
    "test",
    "touch",
    "kill",
    "umount",
    "rmdir",
    "ls",
    "nc",
)
# What any glibc image has: the dynamic loader and glibc's own libraries.
GLIBC = re.compile(r"^(ld-linux[-\w.]*|lib(c|m|dl|rt|pthread|util|resolv|anl)\.so\.\d+)$")
LDD_LINE = re.compile(r"^\s*(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$")

pytestmark = pytest.mark.timeout(180)

APP_ONCE = """\
#!/bin/sh
# Fails its first run, then stays up: one restart to watch.
if [ -e /tmp/app-ran ]; then exec sleep 1000; fi
touch /tmp/app-ran
exit 3
"""

SERVICES = """\
version: 1
services:
  db:
    command: [sh, -c, "touch /tmp/db-ready; exec sleep 1000"]
    ready: {exec: [test, -e, /tmp/db-ready], interval: 100ms}
    stop_timeout: 2s
  app:
    command: [app-once]
    depends_on: {db: ready}
    restart: on-failure
    backoff: {initial: 100ms}
    stop_timeout: 2s
"""


def _required() -> bool:
    return os.environ.get("TINIT_STANDALONE_REQUIRED", "") not in ("", "0")


def _need(what: bool, reason: str) -> None:
    if what:
        return
    if _required():
        pytest.fail(f"{reason} (and TINIT_STANDALONE_REQUIRED is set)")
    pytest.skip(reason)


def _elf_files(directory: Path) -> list[Path]:
    found = []
    for path in sorted(directory.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as file:
                if file.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def _system_libraries(directory: Path) -> set[Path]:
    """Every library outside ``directory`` that its ELF files load, by ldd."""
    needed: set[Path] = set()
    launcher = directory / "tinit"
    # The launcher starts with the caller's environment; once it re-executes
    # itself, the bundled libraries are on LD_LIBRARY_PATH for Python's own.
    bundled = {**os.environ, "LD_LIBRARY_PATH": str(directory / "_internal")}
    plain = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    for elf in _elf_files(directory):
        done = subprocess.run(
            ["ldd", str(elf)],
            capture_output=True,
            text=True,
            timeout=30,
            env=plain if elf == launcher else bundled,
        )
        if "not a dynamic executable" in done.stdout + done.stderr:
            continue
        assert done.returncode == 0, f"ldd {elf}: {done.stderr}"
        missing = [line for line in done.stdout.splitlines() if "not found" in line]
        assert not missing, f"{elf} needs libraries found nowhere: {missing}"
        for line in done.stdout.splitlines():
            match = LDD_LINE.match(line)
            if match and not Path(match[1]).resolve().is_relative_to(directory.resolve()):
                needed.add(Path(match[1]))
    return needed


def _make_image(root: Path) -> None:
    """busybox, the standalone at /opt/tinit, glibc: an image with no Python."""
    for directory in ("bin", "usr/bin", "usr/local/bin", "etc", "proc", "dev", "sys", "tmp"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    for directory in ("run", "root", "etc/tinit"):
        (root / directory).mkdir()
    shutil.copy2(BUSYBOX, root / "bin/busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    (root / "usr/bin/env").symlink_to("/bin/busybox")
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")

    libraries = _system_libraries(STANDALONE)
    foreign = sorted(lib.name for lib in libraries if not GLIBC.match(lib.name))
    assert not foreign, f"the standalone needs libraries a glibc image may lack: {foreign}"
    for library in libraries:
        target = root / library.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library.resolve(), target)

    shutil.copytree(STANDALONE, root / "opt/tinit", symlinks=True)
    (root / "usr/local/bin/tinit").symlink_to("/opt/tinit/tinit")
    app = root / "usr/local/bin/app-once"
    app.write_text(APP_ONCE)
    app.chmod(0o755)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    _need(
        (STANDALONE / "tinit").is_file(),
        f"no standalone tinit at {STANDALONE.relative_to(ROOT)} (run: bash .ci/build)",
    )
    _need(BUSYBOX.is_file(), f"no {BUSYBOX} (apt-get install busybox-static; .ci/setup does)")
    _need(os.geteuid() == 0, "run-container needs root")
    root = tmp_path_factory.mktemp("standalone-image")
    _make_image(root)
    python = [
        str(path.relative_to(root))
        for path in root.rglob("python*")
        if not path.is_relative_to(root / "opt/tinit")
    ]
    assert not python, f"the image must have no Python: {python}"
    return str(root)


@pytest.fixture
def run(
    image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Container]]:
    # run-container mounts the container's tmpfs on $TINIT_TEST_CACHE/run:
    # this test's own directory, never one another run may be using.
    monkeypatch.setenv("TINIT_TEST_CACHE", str(tmp_path))
    started: list[Container] = []

    def start(*args: str, **options: Any) -> Container:
        container = Container(image, *args, hostname="tinit-sa", **options)
        started.append(container)
        return container

    yield start
    for container in started:
        container.kill()
        container.close()
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()
    assert not any((tmp_path / "run").iterdir()), "the container wrote to its scratch directory"


def run_to_end(run: Callable[..., Container], *command: str) -> tuple[int, Container]:
    container = run("--", *command)
    return container.wait(timeout=30), container


def assert_nothing_left(container: Container) -> None:
    assert container.proc.poll() is not None
    deadline = time.monotonic() + 5
    while (left := processes_in(container.namespaces)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still in the container's namespaces: {left}"


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def started(container: Container, command: str) -> bool:
    """PID 1 is tinit (no longer run-container's shell) and ``command`` is its child."""
    init = container.init
    return comm(init) == "tinit" and [comm(kid) for kid in children(init)] == [command]


def assert_frozen_init_alone(container: Container, services: int) -> None:
    """PID 1 is the standalone's executable itself: one thread, only the services as children.

    PyInstaller's one-directory launcher re-executes itself (same pid) and
    runs Python in that process. Were it to fork a Python child and wait
    for it (one-file mode), PID 1 would be that launcher with one more child;
    a runtime thread would show as a second task.
    """
    init = container.init
    exe = container.exec("ls", "-l", "/proc/1/exe").stdout
    assert exe.rstrip().endswith("-> /opt/tinit/tinit"), exe
    tasks = os.listdir(f"/proc/{init}/task")
    assert tasks == [str(init)], f"tinit has threads: {tasks}"
    kids = children(init)
    assert len(kids) == services, f"PID 1's children: {kids}"
    assert all(comm(kid) in ("sleep", "sh", "app-once") for kid in kids), kids


def test_the_image_has_only_glibc_beside_the_standalone(image: str) -> None:
    libraries = [p for p in Path(image).rglob("*.so*") if "opt/tinit" not in str(p)]
    assert libraries, "ldd found no glibc library at all"
    assert all(GLIBC.match(p.name) for p in libraries), libraries


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("true",), 0),
        (("sh", "-c", "exit 3"), 3),
        (("sh", "-c", "kill -USR1 $$"), 128 + signal.SIGUSR1),
    ],
)
def test_one_command_exit_codes(
    run: Callable[..., Container], command: tuple[str, ...], expected: int
) -> None:
    code, container = run_to_end(run, *command)
    assert code == expected, container.log()
    assert container.stderr() == "", container.log()
    assert_nothing_left(container)


def test_one_command_forwards_sigterm_and_is_alone(run: Callable[..., Container]) -> None:
    container = run("--", "sleep", "60")
    container.wait_for("the command", lambda: started(container, "sleep"))
    assert_frozen_init_alone(container, services=1)
    os.kill(container.init, signal.SIGTERM)
    assert container.wait(timeout=20) == 128 + signal.SIGTERM, container.log()
    assert_nothing_left(container)


def test_the_command_gets_the_users_environment(run: Callable[..., Container]) -> None:
    """Not the launcher's LD_LIBRARY_PATH (the bundled libraries) nor its _PYI_* variables."""
    code, container = run_to_end(run, "env")
    assert code == 0, container.log()
    names = {line.partition("=")[0] for line in container.stdout().splitlines()}
    assert "PATH" in names and "HOSTNAME" in names, names
    leaked = {n for n in names if n.startswith(("LD_", "_PYI", "PYINSTALLER"))}
    assert not leaked, container.stdout()
    code, container = run_to_end(run, "sh", "-c", 'echo "$LD_LIBRARY_PATH"')
    assert code == 0
    assert container.stdout() == "\n"


def test_a_users_ld_library_path_reaches_the_command(run: Callable[..., Container]) -> None:
    container = run("--", "sh", "-c", 'echo "$LD_LIBRARY_PATH"', env=("LD_LIBRARY_PATH=/srv/lib",))
    assert container.wait(timeout=30) == 0, container.log()
    assert container.stdout() == "/srv/lib\n"


def test_services_dependencies_restart_status_and_sigterm(
    run: Callable[..., Container], tmp_path: Path
) -> None:
    config = tmp_path / "services.yaml"
    config.write_text(SERVICES)
    container = run(volumes=(f"{config}:/etc/tinit/services.yaml:ro",))
    # app has no ready probe: it is ready once started, the failed run too.
    container.wait_for(
        "app ready a second time",
        lambda: len(container.event("service_ready", service="app")) == 2,
    )

    # app waited for db, failed once with 3, and was started again.
    events = container.events()
    order = [(e["event"], e.get("service")) for e in events]
    assert order.index(("service_ready", "db")) < order.index(("service_starting", "app"))
    assert container.event("service_exited", service="app", exit_code=3), container.log()
    assert container.event("service_restarting", service="app"), container.log()
    assert len(container.event("service_starting", service="app")) == 2

    # The HEALTHCHECK: the standalone's client, from outside tinit, over the control socket.
    status = container.exec("tinit", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {s["name"]: s["state"] for s in json.loads(status.stdout)} == {
        "db": "running",
        "app": "running",
    }
    assert container.exec("tinit", "status").returncode == 0
    assert_frozen_init_alone(container, services=2)

    os.kill(container.init, signal.SIGTERM)
    assert container.wait(timeout=20) == 0, container.log()
    assert container.event("shutdown_finished", exit_code=0), container.log()
    stopped = [e.get("service") for e in container.events() if e["event"] == "service_stopped"]
    assert stopped == ["app", "db"], container.log()
    assert_nothing_left(container)


def test_the_launcher_neither_forks_nor_waits_nor_starts_a_thread(
    image: str, tmp_path: Path
) -> None:
    """The whole life of a frozen ``tinit run -- CMD``, traced: what processes and threads appear.

    The launcher may only re-execute itself (same pid); then the one clone is
    tinit's for the command, without CLONE_THREAD, and every wait is tinit's
    own reaper's ``wait4(-1, ..., WNOHANG)``. A one-file build would show a
    second clone and a blocking wait in the launcher; a runtime thread, a
    clone with CLONE_THREAD.
    """
    strace = shutil.which("strace")
    _need(strace is not None, "no strace here (apt-get install strace; .ci/setup does)")
    assert strace is not None
    trace = tmp_path / "trace"
    calls = "execve,clone,clone3,fork,vfork,wait4,waitid"
    argv = [strace, "-f", "-qq", "-e", f"trace={calls}", "-o", str(trace)]
    done = subprocess.run(
        [*argv, str(STANDALONE / "tinit"), "run", "--", "sh", "-c", "exit 3"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    lines = [line for line in trace.read_text().splitlines() if "(" in line]
    launcher = int(lines[0].split()[0])
    calls_of = [(int(line.split()[0]), line.split(None, 1)[1]) for line in lines]
    execs = [pid for pid, call in calls_of if call.startswith("execve(")]
    clones = [call for pid, call in calls_of if call.startswith(("clone", "fork", "vfork"))]
    waits = [(pid, call) for pid, call in calls_of if call.startswith(("wait4(", "waitid("))]
    child = {pid for pid in execs if pid != launcher}
    assert execs.count(launcher) == 2, lines  # itself, then itself again in place
    assert len(child) == 1 and execs.count(next(iter(child))) == 1, lines
    assert len(clones) == 1 and "CLONE_THREAD" not in clones[0], lines
    assert waits and all(pid == launcher for pid, _ in waits), lines
    assert all(call.startswith("wait4(-1,") and "WNOHANG" in call for _, call in waits), lines


def test_the_exported_probes_run_where_there_is_no_python(run: Callable[..., Container]) -> None:
    """``tinit probe``, which the Kubernetes export's loopback probes run, needs only tinit."""
    # A listener that stays: it runs true for each connection.
    container = run("--", "nc", "-ll", "-p", "18080", "-e", "/bin/true")
    container.wait_for("the command", lambda: started(container, "nc"))
    usage = container.exec("tinit", "probe", "http", "ftp://nowhere/")
    assert usage.returncode == 2, usage.stderr
    refused = container.exec("tinit", "probe", "tcp", "127.0.0.1:18081")
    assert refused.returncode == 1, refused.stderr
    assert "Connection refused" in refused.stderr
    container.wait_for(
        "a passing probe",
        lambda: container.exec("tinit", "probe", "tcp", "127.0.0.1:18080").returncode == 0,
    )
    os.kill(container.init, signal.SIGTERM)
    assert container.wait(timeout=20) == 128 + signal.SIGTERM, container.log()
    assert_nothing_left(container)


def test_every_tinit_module_is_frozen(image: str) -> None:
    """Each subcommand imports its modules lazily: all of them must be in the bundle."""
    source = ROOT / "tinit"
    frozen = STANDALONE / "_internal" / "tinit"
    missing = [
        str(module.relative_to(source))
        for module in source.rglob("*.py")
        if not (frozen / module.relative_to(source)).with_suffix(".pyc").is_file()
    ]
    assert not missing, f"not in the standalone: {missing}"


@pytest.mark.parametrize(
    "args",
    [
        ("check", "--offline", "configs/webapp-redis.yaml"),
        ("check", "--json", "--offline", "configs/reference.yaml"),
        ("export", "kubernetes", "configs/webapp-redis.yaml"),
        ("import", "supervisord", "tests/supervisord/cron-and-app.conf"),
        ("import", "process-compose", "tests/process_compose/izanami.yaml"),
    ],
)
def test_the_lazily_loaded_subcommands_run(image: str, args: tuple[str, ...]) -> None:
    done = subprocess.run(
        [str(STANDALONE / "tinit"), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout, done.stderr
    assert "internal error" not in done.stderr


def test_version_matches_the_package(image: str) -> None:
    from tinit import __version__

    for flag in ("--version", "-V", "version"):
        done = subprocess.run(
            [str(STANDALONE / "tinit"), flag], capture_output=True, text=True, timeout=30
        )
        assert (done.returncode, done.stdout) == (0, f"{__version__}\n"), done.stderr
