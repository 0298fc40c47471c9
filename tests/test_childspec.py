"""Child specs (childspec.py): what a service's process is to be, from its config alone."""

from __future__ import annotations

import os
import signal
import textwrap
from typing import TYPE_CHECKING

import pytest

from tinit import childspec
from tinit.config import parse_config
from tinit.errors import SpawnError

if TYPE_CHECKING:
    from tinit.config import Service

SIGKILL = int(signal.SIGKILL)


def service(body: str) -> Service:
    """Service ``svc`` of a config whose service body is ``body`` (YAML)."""
    text = "version: 1\nservices:\n  svc:\n" + textwrap.indent(textwrap.dedent(body), "    ")
    config = parse_config(text, filename="/nonexistent/services.yaml", environ={}, offline=True)
    return config.services["svc"]


def test_child_spec_is_built_from_the_service_alone() -> None:
    svc = service("""
        command: [fake, --flag]
        workdir: /srv
        umask: "027"
        env: {A: "1", NOTIFY_SOCKET: /mine}
    """)
    fds = childspec.RunFds(stdin=10, stdout=11, stderr=12, passed={3: 13}, cgroup_procs=14)
    inherited = {"LISTEN_FDS": "2", "NOTIFY_SOCKET": "/run/theirs"}
    spec = childspec.build(svc, fds, pid1=False, inherited=inherited)
    assert spec.argv == ("fake", "--flag")
    assert (spec.stdin, spec.stdout, spec.stderr, spec.cgroup_procs) == (10, 11, 12, 14)
    assert spec.pass_fds == {3: 13}
    assert spec.cwd == "/srv"
    assert spec.umask == 0o027
    assert spec.pdeathsig == SIGKILL
    assert spec.privileges is None
    assert spec.namespaces is None
    assert spec.env["A"] == "1"
    assert spec.env["NOTIFY_SOCKET"] == "/mine"  # the service's own value stays
    assert childspec.build(svc, fds, pid1=True).pdeathsig is None


def test_runtime_only_variables_tinit_inherited_do_not_reach_services() -> None:
    text = "version: 1\nservices:\n  svc: {command: fake}\n"
    inherited = {"PATH": "/bin", "LISTEN_FDS": "2", "NOTIFY_SOCKET": "/run/n"}
    config = parse_config(text, filename="/x/s.yaml", environ=inherited, offline=True)
    env = childspec.environment(config.services["svc"], inherited)
    assert env == {"PATH": "/bin"}


def test_an_unknown_user_is_a_spawn_error() -> None:
    svc = service("""
        command: fake
        user: no-such-user-here
    """)
    with pytest.raises(SpawnError, match="unknown user 'no-such-user-here'"):
        childspec.build(svc, childspec.RunFds(0, 1, 2), pid1=True)


def test_a_user_brings_its_ids_groups_and_login_variables() -> None:
    svc = service("""
        command: fake
        user: nobody
        group: "4242"
        env: {HOME: /srv/home}
    """)
    spec = childspec.build(svc, childspec.RunFds(0, 1, 2), pid1=True, inherited={})
    assert spec.privileges is not None
    assert (spec.privileges.uid, spec.privileges.gid) == (65534, 4242)
    # the account's supplementary groups; group: changes the primary group only
    assert spec.privileges.groups == tuple(os.getgrouplist("nobody", 65534))
    assert spec.env["USER"] == spec.env["LOGNAME"] == "nobody"
    assert spec.env["HOME"] == "/srv/home"  # the service's env: wins over the account's


def test_a_user_number_without_an_account_stands_for_itself() -> None:
    entry = childspec.user_entry("4999999")
    assert (entry.pw_uid, entry.pw_gid, entry.pw_dir) == (4999999, 4999999, "/")


def test_an_exec_probe_is_the_services_spec_with_its_argv_entering_its_namespaces() -> None:
    svc = service("""
        command: [app]
        user: nobody
        workdir: /srv
        env: {A: "1"}
        namespaces: {private_tmp: true, network: none}
    """)
    fds = childspec.RunFds(stdin=10, stdout=10, stderr=10, cgroup_procs=14)
    main = childspec.build(svc, fds, pid1=True)
    probe = childspec.build(svc, fds, pid1=True, argv=("check", "-q"), enter={0x40000000: 20})
    assert probe.argv == ("check", "-q")
    assert main.namespaces is not None and main.enter_namespaces == {}
    # joined, not set up anew: a fresh private /tmp would be empty
    assert probe.namespaces is None
    assert probe.enter_namespaces == {0x40000000: 20}
    assert (probe.privileges, probe.env, probe.cwd) == (main.privileges, main.env, main.cwd)
    assert probe.cgroup_procs == 14


def test_inherited_fds_bring_listen_variables_for_the_child() -> None:
    svc = service("command: [app]\nenv: {LISTEN_PID: '1'}\n")
    fds = childspec.RunFds(stdin=10, stdout=11, stderr=12, passed={3: 7}, listen_names=("http",))
    spec = childspec.build(svc, fds, pid1=True)
    assert (spec.env["LISTEN_FDS"], spec.env["LISTEN_FDNAMES"]) == ("1", "http")
    assert "LISTEN_PID" not in spec.env  # the child sets its own
    assert spec.listen_pid_self
    plain = childspec.build(svc, childspec.RunFds(stdin=10, stdout=11, stderr=12), pid1=True)
    assert not plain.listen_pid_self and "LISTEN_FDS" not in plain.env
