"""Files tinit opens for a service: with the service's rights, never blocking or spinning.

End to end, tinit is PID 1 and the service runs as ``nobody`` in a directory
it owns, where it swaps its own ``output: file:`` or ``stdin:`` for a
symbolic link to a root-only file, for a FIFO, or for a link to nowhere; the
next start must fail with a reason, never leak the file, hang or spin.
safeopen.py itself is checked in this process too (as root: it switches the
filesystem ids and must switch them back).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.nobody import NOBODY, SECRET
from tests.svcrun import run_config
from tinit import childspec
from tinit.config import load_config, parse_config
from tinit.errors import ConfigError
from tinit.safeopen import Access, FileRefused, Owner, open_for_service

if TYPE_CHECKING:
    pass

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.getuid() != 0, reason="needs root to run services as nobody"),
]

AS_NOBODY = Owner(NOBODY, NOBODY, (NOBODY,))


def _failures(events: list[dict[str, object]]) -> list[str]:
    """The reasons of ``service_start_failed`` events."""
    return [str(e["error"]) for e in events]


def test_output_file_swapped_for_a_link_to_a_root_file_is_refused(own: Path, secret: Path) -> None:
    """Before: after the restart, tinit appended the service's output to the root-only file."""
    log = own / "app.log"
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app:
            command: [sh, -c, "test -L {log} && echo leaked && exit 0; rm {log}; ln -s {secret} {log}; exit 1"]
            user: nobody
            output: file:{log}
            max_restarts: 1
            backoff: {{initial: 50ms}}
        """,
        timeout=20,
    )
    assert secret.read_bytes() == SECRET
    errors = _failures(result.named("service_start_failed", "app"))
    assert errors == [f"{log}: cannot open for appending as uid {NOBODY}: Permission denied"]
    assert len(result.named("service_gave_up", "app")) == 1  # a refused open is a failed start
    assert result.code == 126


def test_stdin_swapped_for_a_link_to_a_root_file_is_refused(own: Path, secret: Path) -> None:
    """Before: the second run read the root-only file as its stdin."""
    feed = own / "input"
    feed.write_text("public\n")
    os.chown(feed, NOBODY, NOBODY)
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app:
            command: [sh, -c, "cat; rm {feed}; ln -s {secret} {feed}; exit 1"]
            user: nobody
            stdin: {feed}
            max_restarts: 1
            backoff: {{initial: 50ms}}
        """,
        timeout=20,
    )
    assert result.output("app") == ["public"]
    assert SECRET.decode().strip() not in result.stdout
    errors = _failures(result.named("service_start_failed", "app"))
    assert errors == [f"{feed}: cannot open for reading as uid {NOBODY}: Permission denied"]


def test_output_file_swapped_for_a_fifo_fails_the_start_at_once(own: Path) -> None:
    """Before: tinit blocked in open() for good, waiting for a reader of the FIFO."""
    log = own / "app.log"
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app:
            command: [sh, -c, "rm {log}; mkfifo -m 600 {log}; exit 1"]
            user: nobody
            output: file:{log}
            max_restarts: 1
            backoff: {{initial: 50ms}}
        """,
        timeout=20,
    )
    assert stat.S_ISFIFO(log.lstat().st_mode)
    errors = _failures(result.named("service_start_failed", "app"))
    assert errors == [f"{log}: a FIFO or socket, not a regular file: refused"]
    assert result.code == 126


def test_stdin_that_is_a_fifo_or_a_directory_fails_the_start(own: Path) -> None:
    """Before: a FIFO as stdin blocked tinit in open() until a writer came."""
    fifo = own / "fifo"
    os.mkfifo(fifo, 0o600)
    os.chown(fifo, NOBODY, NOBODY)
    result = run_config(
        own,
        f"""
        version: 1
        services:
          piped: {{command: "true", user: nobody, stdin: {fifo}, restart: never}}
          folder: {{command: "true", stdin: {own}, restart: never}}
        """,
        timeout=20,
    )
    assert _failures(result.named("service_start_failed", "piped")) == [
        f"{fifo}: a FIFO, not a regular file: refused"
    ]
    assert _failures(result.named("service_start_failed", "folder")) == [
        f"{own}: a directory, not a regular file: refused"
    ]


def test_dangling_link_as_output_file_fails_each_start_and_tinit_ends(tmp_path: Path) -> None:
    """Before: tinit spun at 100% CPU for good on a link to nowhere, even as root."""
    log = tmp_path / "app.log"
    log.symlink_to(tmp_path / "missing" / "app.log")
    result = run_config(
        tmp_path,
        f"""
        version: 1
        services:
          app:
            command: "true"
            output: file:{log}
            max_restarts: 2
            backoff: {{initial: 50ms}}
        """,
        timeout=20,
    )
    errors = _failures(result.named("service_start_failed", "app"))
    assert errors == [f"{log}: a symbolic link to a missing file: refused"] * 3
    assert [e["failures"] for e in result.named("service_gave_up", "app")] == [3]
    assert not (tmp_path / "missing").exists()


def test_files_a_service_may_open_still_work(own: Path, tmp_path: Path) -> None:
    """A new log file belongs to the service's user; /dev/null is fine; root opens anything."""
    log = own / "app.log"
    root_log = tmp_path / "root.log"  # in a directory only root can enter
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app: {{command: "id -u", user: nobody, output: "file:{log}", stdin: /dev/null, restart: never}}
          quiet: {{command: "echo hidden", user: nobody, output: "file:/dev/null", restart: never}}
          admin: {{command: "id -u", output: "file:{root_log}", restart: never}}
        """,
        timeout=20,
    )
    assert result.code == 0
    assert log.read_text() == f"{NOBODY}\n"
    info = log.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o640)
    assert root_log.read_text() == "0\n"
    assert result.output("quiet") == result.output("quiet", "stderr") == []
    assert result.named("service_exited", "quiet")[0]["exit_code"] == 0


def test_workdir_is_entered_with_the_services_rights(own: Path, tmp_path: Path) -> None:
    """chdir happens in the child after the user switch: a link to a root-only directory fails."""
    workdir = own / "work"
    workdir.symlink_to(tmp_path)
    result = run_config(
        own,
        f"""
        version: 1
        services:
          app: {{command: "pwd", user: nobody, workdir: {workdir}, restart: never}}
        """,
        timeout=20,
    )
    errors = _failures(result.named("service_start_failed", "app"))
    assert len(errors) == 1
    assert "chdir" in errors[0]
    assert "Permission denied" in errors[0]
    assert result.output("app") == []


# -- whose rights, and safeopen.py itself, in this process ------------------------


def test_files_are_opened_with_the_ids_the_child_switches_to() -> None:
    """childspec.owner: the uid, gid and groups of the child spec; None for root."""
    text = """
        version: 1
        services:
          app: {command: [fake], user: nobody, group: "4242"}
          plain: {command: [fake]}
          admin: {command: [fake], user: root, group: nogroup}
        """
    services = parse_config(text, filename="/x/services.yaml", environ={}, offline=True).services
    spec = childspec.build(services["app"], childspec.RunFds(0, 1, 2), pid1=True, inherited={})
    assert spec.privileges is not None
    assert childspec.owner(services["app"]) == Owner(NOBODY, 4242, spec.privileges.groups or ())
    assert childspec.owner(services["plain"]) is None
    assert childspec.owner(services["admin"]) is None


def _fs_ids() -> tuple[str, str, str]:
    status = Path("/proc/self/status").read_text().splitlines()
    wanted = ("Uid:", "Gid:", "Groups:")
    found = {line.split(":")[0] + ":": line for line in status if line.startswith(wanted)}
    return found["Uid:"], found["Gid:"], found["Groups:"]


def test_open_as_the_service_refuses_what_it_cannot_open_and_restores_tinits_ids(
    own: Path, secret: Path
) -> None:
    before = _fs_ids()
    link = own / "link"
    link.symlink_to(secret)
    for access in Access:
        with pytest.raises(FileRefused) as caught:
            open_for_service(str(link), access, AS_NOBODY)
        assert caught.value.filename == str(link)
        assert _fs_ids() == before
    fd = open_for_service(str(link), Access.READ, None)  # a root service may
    try:
        assert os.read(fd, 100) == SECRET
        assert os.get_blocking(fd)  # the service gets a plain blocking stdin
    finally:
        os.close(fd)
    assert _fs_ids() == before


def test_open_never_waits_for_a_fifo_peer(own: Path) -> None:
    fifo = own / "fifo"
    os.mkfifo(fifo)
    fifo.chmod(0o666)  # anyone may open it: only the missing peer stops the open
    for access, reason in (
        (Access.APPEND, "a FIFO or socket, not a regular file: refused"),
        (Access.READ, "a FIFO, not a regular file: refused"),
    ):
        for owner in (None, AS_NOBODY):
            with pytest.raises(FileRefused) as caught:
                open_for_service(str(fifo), access, owner)
            assert str(caught.value) == f"{fifo}: {reason}"


def test_append_creates_the_file_once_as_the_owner(own: Path) -> None:
    path = own / "new.log"
    old = os.umask(0o077)
    try:
        first = open_for_service(str(path), Access.APPEND, AS_NOBODY)
        second = open_for_service(str(path), Access.APPEND, AS_NOBODY)
    finally:
        os.umask(old)
    try:
        os.write(first, b"a\n")
        os.write(second, b"b\n")
    finally:
        os.close(first)
        os.close(second)
    info = path.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640)
    assert path.read_bytes() == b"a\nb\n"


def test_env_file_is_read_with_the_services_rights(own: Path, secret: Path) -> None:
    """Before: tinit read a `user: nobody` service's env_file as root, so a link to a
    root-only file put its contents into the service's environment. Now the file is read
    as the service's user, and the config is refused with the reason."""
    env_file = own / "app.env"
    os.symlink(secret, env_file)
    config = own / "services.yaml"
    config.write_text(
        f"version: 1\nservices:\n  app: {{command: [env], user: nobody, env_file: {env_file}}}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_config(str(config))
    (problem,) = caught.value.problems
    assert "can't read env file" in problem.message and "Permission denied" in problem.message
    # A file nobody may read is read as before.
    env_file.unlink()
    env_file.write_text("FROM_FILE=yes\n")
    loaded = load_config(str(config))
    assert loaded.services["app"].environment["FROM_FILE"] == "yes"
    assert (os.geteuid(), os.getegid()) == (0, 0)


def test_a_root_only_env_file_that_only_root_controls_is_read(tmp_path: Path) -> None:
    """As systemd's EnvironmentFile=: a root-only secret in a path only root can change is
    read for a `user: nobody` service (the config's author named it), through a root-owned
    symbolic link too, as Kubernetes mounts secrets."""
    os.chmod(tmp_path, 0o755)
    secret = tmp_path / "secret.env"
    secret.write_text("TOKEN=s3cret\n")
    secret.chmod(0o600)
    link = tmp_path / "current.env"
    os.symlink(secret.name, link)
    config = tmp_path / "services.yaml"
    config.write_text(
        f"version: 1\nservices:\n  app: {{command: [env], user: nobody, env_file: {link}}}\n"
    )
    assert load_config(str(config)).services["app"].environment["TOKEN"] == "s3cret"
    # The same file behind a directory nobody may write into is another matter.
    os.chmod(tmp_path, 0o777)
    with pytest.raises(ConfigError):
        load_config(str(config))
    os.chmod(tmp_path, 0o755)
