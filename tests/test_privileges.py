"""Dropping privileges before exec, checked on real children.

Each test starts a child with ``preexec_fn`` calling :func:`apply_in_child`,
execs a small checker, and reads back what the kernel says the checker ended
up with (/proc/self/status, bind, chown, id). ``subprocess.run`` with a
timeout kills and reaps the child, so nothing is left running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import prctl
import pytest

from tinit.config import Capabilities, _units
from tinit.privileges import (
    NAMES,
    Privileges,
    apply_in_child,
    cap_number,
    last_cap,
    resolve,
)

NOBODY = 65534
CHOWN = cap_number("CHOWN")
NET_BIND_SERVICE = cap_number("NET_BIND_SERVICE")
TIMEOUT = 20

CHECKER = r"""
import errno, json, os, socket, sys
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}
with open("/proc/self/status") as f:
    for line in f:
        key, _, value = line.partition(":")
        if key.startswith("Cap") or key == "NoNewPrivs":
            out[key] = value.strip()
for action in sys.argv[1:]:
    verb, _, arg = action.partition("=")
    try:
        if verb == "bind":
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", int(arg)))
            finally:
                s.close()
        elif verb == "chown":
            path, _, uid = arg.rpartition(":")
            os.chown(path, int(uid), -1)
        out[verb] = "ok"
    except OSError as e:
        out[verb] = errno.errorcode[e.errno]
print(json.dumps(out))
"""


def _is_root_with_caps() -> bool:
    return os.geteuid() == 0 and bool(prctl.cap_effective.setpcap)


needs_root = pytest.mark.skipif(
    not _is_root_with_caps(), reason="needs root with CAP_SETPCAP to change privileges"
)
pytestmark = pytest.mark.timeout(60)


def run_with(
    p: Privileges,
    argv: list[str],
    *,
    before: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run argv in a child that applies ``p`` first; a failure exits 126 with
    ``errno|message`` on stderr."""

    def child() -> None:
        try:
            if before is not None:
                before()
            apply_in_child(p)
        except OSError as exc:
            os.write(2, f"{exc.errno}|{exc.strerror}".encode())
            os._exit(126)
        except BaseException as exc:
            os.write(2, f"0|{exc!r}".encode())
            os._exit(126)

    return subprocess.run(
        argv,
        preexec_fn=child,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd="/",
        check=False,
    )


def check(
    python: str, p: Privileges, *actions: str, before: Callable[[], None] | None = None
) -> dict[str, object]:
    """Run the checker under ``p`` and return what it reported."""
    result = run_with(p, [python, "-I", "-c", CHECKER, *actions], before=before)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    return report


def capset(report: dict[str, object] | dict[str, str], key: str) -> set[int]:
    """The capability numbers in a hex mask line such as ``CapEff``."""
    mask = int(str(report[key]), 16)
    return {bit for bit in range(64) if mask >> bit & 1}


def own_status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return {k: v.strip() for k, _, v in (line.partition(":") for line in f)}


@pytest.fixture(scope="module")
def python() -> str:
    """An interpreter that uid 65534 may execute (a venv under /root may not be)."""
    for candidate in dict.fromkeys(
        [sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3"]
    ):
        if not os.path.exists(candidate):
            continue
        try:
            probe = run_with(
                Privileges(uid=NOBODY, gid=NOBODY, groups=()), [candidate, "-I", "-c", "pass"]
            )
        except PermissionError:
            continue  # exec refused: a directory on the way is closed to nobody
        if probe.returncode == 0:
            return candidate
    raise pytest.skip.Exception("no Python interpreter that uid 65534 can execute")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def low_port() -> int:
    """A free port below ip_unprivileged_port_start, 80 if it is free."""
    try:
        start = int(Path("/proc/sys/net/ipv4/ip_unprivileged_port_start").read_text())
    except OSError:
        start = 1024
    candidates: list[int] = [80, *range(start - 1, 0, -1)]
    for port in candidates:
        if port < start and _is_free(port):
            return port
    raise pytest.skip.Exception(
        f"no privileged port is free (ip_unprivileged_port_start = {start})"
    )


# --- non-root services -----------------------------------------------------


@needs_root
def test_added_net_bind_service_lets_nobody_bind_a_low_port(python: str, low_port: int) -> None:
    """drop ALL + add NET_BIND_SERVICE: nobody binds a low port, and holds only that cap."""
    p = resolve(
        Capabilities(drop=("ALL",), add=("NET_BIND_SERVICE",)), uid=NOBODY, gid=NOBODY, groups=()
    )
    report = check(python, p, f"bind={low_port}")
    assert report["uid"] == NOBODY
    assert report["bind"] == "ok"
    for key in ("CapPrm", "CapEff", "CapInh", "CapAmb", "CapBnd"):
        assert capset(report, key) == {NET_BIND_SERVICE}, key


@needs_root
def test_nobody_without_add_cannot_bind_a_low_port(python: str, low_port: int) -> None:
    """Without add, the switch to nobody leaves no capability: bind gets EACCES."""
    report = check(python, Privileges(uid=NOBODY, gid=NOBODY, groups=()), f"bind={low_port}")
    assert report["bind"] == "EACCES"
    for key in ("CapPrm", "CapEff", "CapInh", "CapAmb"):
        assert capset(report, key) == set(), key
    assert capset(report, "CapBnd") == capset(own_status(), "CapBnd")


@needs_root
def test_add_without_drop_keeps_the_bounding_set(python: str, low_port: int) -> None:
    """add alone makes the cap ambient and leaves the bounding set as tinit's."""
    p = resolve(Capabilities(add=("net_bind_service",)), uid=NOBODY, gid=NOBODY, groups=())
    report = check(python, p, f"bind={low_port}")
    assert report["bind"] == "ok"
    assert capset(report, "CapAmb") == capset(report, "CapEff") == {NET_BIND_SERVICE}
    assert capset(report, "CapBnd") == capset(own_status(), "CapBnd")


@needs_root
def test_a_dropped_cap_cannot_be_added_back(python: str, low_port: int) -> None:
    """drop and add of the same cap: add wins, like docker's --cap-drop/--cap-add."""
    caps = Capabilities(drop=("NET_BIND_SERVICE", "NET_RAW"), add=("NET_BIND_SERVICE",))
    report = check(python, resolve(caps, uid=NOBODY, gid=NOBODY, groups=()), f"bind={low_port}")
    assert report["bind"] == "ok"
    assert NET_BIND_SERVICE in capset(report, "CapBnd")
    assert cap_number("NET_RAW") not in capset(report, "CapBnd")


# --- root services ---------------------------------------------------------


@needs_root
def test_root_with_drop_all_cannot_chown(python: str, tmp_path: Path) -> None:
    """drop ALL for a root service: no cap survives exec, so chown is EPERM."""
    target = tmp_path / "owned"
    target.touch()
    report = check(python, resolve(Capabilities(drop=("ALL",))), f"chown={target}:{NOBODY}")
    assert report["uid"] == 0
    assert report["chown"] == "EPERM"
    for key in ("CapPrm", "CapEff", "CapBnd", "CapAmb", "CapInh"):
        assert capset(report, key) == set(), key
    assert target.stat().st_uid == 0


@needs_root
def test_root_with_drop_all_add_chown_can_chown(python: str, tmp_path: Path) -> None:
    """drop ALL + add CHOWN for a root service: CHOWN is all it has, and chown works."""
    target = tmp_path / "owned"
    target.touch()
    p = resolve(Capabilities(drop=("ALL",), add=("CAP_CHOWN",)))
    report = check(python, p, f"chown={target}:{NOBODY}")
    assert report["chown"] == "ok"
    for key in ("CapPrm", "CapEff", "CapBnd"):
        assert capset(report, key) == {CHOWN}, key
    assert target.stat().st_uid == NOBODY


@needs_root
def test_root_drop_all_survives_an_inherited_inheritable_set(python: str) -> None:
    """An inheritable set from the runtime (old Docker) must not refill root's caps at exec.

    execve gives root P' = bounding | inheritable, so dropping the bounding set
    alone would not be enough.
    """

    def inherit_everything() -> None:
        held = [cap for cap in prctl.ALL_CAPS if prctl.capbset_read(cap)]
        prctl.set_caps((held, prctl.CAP_INHERITABLE, True))

    report = check(python, resolve(Capabilities(drop=("ALL",))), before=inherit_everything)
    for key in ("CapPrm", "CapEff", "CapInh"):
        assert capset(report, key) == set(), key


@needs_root
def test_root_drop_some_keeps_the_rest(python: str) -> None:
    """drop [NET_RAW] for root: everything else tinit holds survives exec."""
    report = check(python, resolve(Capabilities(drop=("NET_RAW",))))
    expected = capset(own_status(), "CapBnd") - {cap_number("NET_RAW")}
    assert capset(report, "CapBnd") == expected
    assert capset(report, "CapEff") == expected


@needs_root
def test_nothing_asked_changes_nothing(python: str) -> None:
    """An empty Privileges leaves ids and capability sets as tinit's."""
    report = check(python, Privileges())
    mine = own_status()
    assert report["uid"] == os.getuid()
    for key in ("CapPrm", "CapEff", "CapBnd", "CapInh", "CapAmb", "NoNewPrivs"):
        assert report[key] == mine[key], key


# --- no_new_privs ----------------------------------------------------------


@needs_root
def test_no_new_privs_is_set_and_ambient_caps_survive_it(python: str, low_port: int) -> None:
    """no_new_privs shows in /proc/self/status and does not take the ambient caps away."""
    caps = Capabilities(drop=("ALL",), add=("NET_BIND_SERVICE",))
    p = resolve(caps, uid=NOBODY, gid=NOBODY, groups=(), no_new_privs=True)
    report = check(python, p, f"bind={low_port}")
    assert report["NoNewPrivs"] == "1"
    assert report["bind"] == "ok"
    assert capset(report, "CapAmb") == {NET_BIND_SERVICE}


@needs_root
def test_no_new_privs_is_off_unless_asked(python: str) -> None:
    """Without no_new_privs the flag stays as tinit's (clear)."""
    report = check(python, Privileges(uid=NOBODY, gid=NOBODY, groups=()))
    assert report["NoNewPrivs"] == "0"


# --- user and groups -------------------------------------------------------


def id_of(p: Privileges) -> tuple[str, str, set[str]]:
    result = run_with(p, ["/bin/sh", "-c", "id -u; id -g; id -G"])
    assert result.returncode == 0, result.stderr
    uid, gid, groups = result.stdout.splitlines()
    return uid, gid, set(groups.split())


@needs_root
def test_groups_gid_and_uid_take_effect() -> None:
    """setgroups, setgid and setuid all show in id -u/-g/-G."""
    p = Privileges(uid=NOBODY, gid=4321, groups=(4321, 5555, 6666))
    assert id_of(p) == (str(NOBODY), "4321", {"4321", "5555", "6666"})


@needs_root
def test_leaving_root_without_groups_drops_roots_groups() -> None:
    """groups None on a switch away from root: the service does not keep gid 0."""
    uid, gid, groups = id_of(Privileges(uid=NOBODY, gid=NOBODY))
    assert (uid, gid, groups) == (str(NOBODY), str(NOBODY), {str(NOBODY)})


@needs_root
def test_root_service_keeps_its_groups_when_none_are_given() -> None:
    """groups None for a root service changes nothing."""
    assert id_of(Privileges(gid=0)) == ("0", "0", {str(g) for g in [0, *os.getgroups()]})


# --- failures --------------------------------------------------------------


def failure_of(p: Privileges, before: Callable[[], None] | None = None) -> tuple[int, str]:
    result = run_with(p, ["/bin/true"], before=before)
    assert result.returncode == 126, (result.returncode, result.stderr)
    code, _, message = result.stderr.partition("|")
    return int(code), message


@needs_root
def test_adding_a_cap_tinit_lacks_fails_naming_it() -> None:
    """add of a cap tinit does not hold fails before anything changes, naming the cap."""

    def lose_sys_boot() -> None:
        prctl.set_caps((prctl.CAP_SYS_BOOT, [prctl.CAP_PERMITTED, prctl.CAP_EFFECTIVE], False))

    p = resolve(Capabilities(add=("SYS_BOOT",)), uid=NOBODY, gid=NOBODY, groups=())
    code, message = failure_of(p, before=lose_sys_boot)
    assert code == 1  # EPERM
    assert message.startswith("keep capabilities: tinit itself does not hold CAP_SYS_BOOT")


@needs_root
def test_a_failed_setuid_names_its_stage() -> None:
    """A step the kernel refuses is reported as OSError(errno, "stage: reason")."""
    code, message = failure_of(Privileges(uid=1000), before=lambda: os.setuid(NOBODY))
    assert code == 1
    assert message == "set user 1000: Operation not permitted"


# --- resolve() and cap_number() (pure) ---------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "NET_BIND_SERVICE",
        "net_bind_service",
        "CAP_NET_BIND_SERVICE",
        "cap_Net_Bind_Service",
        " NET_BIND_SERVICE ",
    ],
)
def test_cap_number_accepts_any_case_with_or_without_prefix(name: str) -> None:
    """Names are case-insensitive and CAP_ is optional."""
    assert cap_number(name) == 10


def test_cap_numbers_agree_with_the_kernel_headers() -> None:
    """The table matches python-prctl's constants and config's list of names."""
    for number, name in enumerate(NAMES):
        constant = getattr(prctl, f"CAP_{name}", None)
        if constant is not None:
            assert constant == number, name
    assert set(NAMES) == _units.CAPABILITIES


def test_unknown_cap_is_a_value_error_with_a_suggestion() -> None:
    """A misspelt name raises ValueError naming it, with a did-you-mean."""
    with pytest.raises(
        ValueError,
        match=r"unknown capability 'NET_BIND_SERVIC' \(did you mean 'NET_BIND_SERVICE'\?\)",
    ):
        resolve(Capabilities(add=("NET_BIND_SERVIC",)))
    with pytest.raises(ValueError, match="unknown capability 'FLY'"):
        resolve(Capabilities(drop=("FLY",)))


def test_all_is_not_a_single_cap() -> None:
    """cap_number("ALL") is an error: ALL only means something in a list."""
    with pytest.raises(ValueError, match="unknown capability 'ALL'"):
        cap_number("ALL")


def test_drop_all_means_every_cap_the_kernel_knows_except_add() -> None:
    """drop ALL = 0..cap_last_cap, minus what add keeps."""
    kernel_last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    assert last_cap() == kernel_last
    p = resolve(Capabilities(drop=("all",), add=("CHOWN", "cap_net_bind_service")))
    assert p.add == {CHOWN, NET_BIND_SERVICE}
    assert p.drop == set(range(kernel_last + 1)) - {CHOWN, NET_BIND_SERVICE}


def test_resolve_passes_ids_through() -> None:
    """uid, gid, groups and no_new_privs are carried over; groups become a tuple."""
    p = resolve(Capabilities(), uid=1, gid=2, groups=[3, 4], no_new_privs=True)
    assert p == Privileges(uid=1, gid=2, groups=(3, 4), no_new_privs=True)
