"""``tinit probe tcp|http``: tinit's own tcp and http checks, as a command.

Another orchestrator's exec probe can then check a service the way tinit
does, from inside the container, with nothing in the image but tinit: the
Kubernetes export uses it for probes on loopback, which the kubelet cannot
reach from outside. The request and the verdict are the ones probes.py uses
(``http_request``, ``http_passes``), so both pass and fail alike.

Synchronous and without trio: it runs once per probe period, so it loads
as little as it can. The exit code is the verdict: 0 passes, 1 fails (one
line on stderr says why), 2 is a usage error.
"""

from __future__ import annotations

import socket
import sys
import time
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from .errors import UsageError

if TYPE_CHECKING:
    import argparse
    from typing import Any

#: what a probe reads of the answer: the status line, within this many bytes
MAX_STATUS_LINE: Final = 1024
#: the default of ``--timeout``, as for a probe in a config
DEFAULT_TIMEOUT: Final = 1.0
_FAILED: Final = 1
#: the longest target a message repeats whole
_SHOWN: Final = 120


def http_request(url: str) -> tuple[str, int, bytes]:
    """Host, port and request bytes of ``GET url`` as a probe sends it."""
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]  # credentials are never sent
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {authority}\r\n"
        "User-Agent: tinit-probe\r\nConnection: close\r\n\r\n"
    ).encode()
    return host, port, request


def http_passes(head: bytes) -> bool:
    """Whether an answer starting with ``head`` passes: a 2xx or 3xx status line."""
    fields = head.split(b"\r\n", 1)[0].split()
    return (
        len(fields) >= 2
        and fields[0].startswith(b"HTTP/")
        and fields[1].isdigit()
        and 200 <= int(fields[1]) < 400
    )


def address_of(host: str, port: int) -> tuple[int, tuple[str, int]]:
    """Socket family and address for ``host``: numeric as is, a name looked up once."""
    host = host.strip("[]")
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family, (host, port)
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    return family, (str(address[0]), int(address[1]))


def add_parser(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``probe`` to ``tinit``'s subparsers."""
    text = "check a service as a tcp or http probe does: exit 0 when it passes, 1 when not"
    parser: argparse.ArgumentParser = sub.add_parser("probe", help=text, description=text)
    parser.add_argument("kind", choices=("tcp", "http"), metavar="KIND", help="tcp or http")
    parser.add_argument(
        "target", metavar="TARGET", help="HOST:PORT for tcp ([::1]:PORT for IPv6), a URL for http"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """``tinit probe``: 0 when the check passes, 1 (and why, on stderr) when not."""
    timeout = args.timeout
    if not 0 < timeout <= 3600:
        raise UsageError(f"--timeout must be more than 0 and at most 3600 seconds, got {timeout}")
    target: str = args.target
    if not target.isprintable() or any(c.isspace() for c in target):
        raise UsageError(f"{_shown(target)!r}: spaces and control characters have no place here")
    if args.kind == "tcp":
        host, port = _host_port(target)
        request = None
    else:
        host, port, request = _http_target(target)
    _check_name(host, target)
    why = _check(host, port, request, time.monotonic() + timeout)
    if why is None:
        return 0
    print(f"tinit: probe failed: {_shown(target)}: {why}", file=sys.stderr)
    return _FAILED


def _shown(target: str) -> str:
    """``target`` for a message: bounded, since it comes from a command line."""
    return target if len(target) <= _SHOWN else f"{target[:_SHOWN]}..."


def _host_port(target: str) -> tuple[str, int]:
    host, sep, port = target.rpartition(":")
    bracketed = host.startswith("[") == host.endswith("]")
    if not sep or not host or not bracketed or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(
            f"a tcp probe takes HOST:PORT ([::1]:PORT for IPv6), got {_shown(target)!r}"
        )
    return host, int(port)


def _http_target(url: str) -> tuple[str, int, bytes]:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number or out of range
    except ValueError as exc:
        raise UsageError(f"{_shown(url)!r}: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"an http probe takes an http://HOST[:PORT]/PATH URL, got {_shown(url)!r}")
    return http_request(url)


def _check_name(host: str, target: str) -> None:
    """A host that no resolver could take (a label over 63 bytes, say) is a usage error."""
    try:
        host.strip("[]").encode("idna")
    except UnicodeError:
        raise UsageError(f"{_shown(target)!r}: not a host name") from None


def _check(host: str, port: int, request: bytes | None, deadline: float) -> str | None:
    """None when the check passes, else why not."""
    try:
        family, address = address_of(host, port)
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            sock.connect(address)
            if request is None:
                return None
            sock.sendall(request)
            head = b""
            while b"\r\n" not in head and len(head) < MAX_STATUS_LINE:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                chunk = sock.recv(MAX_STATUS_LINE)
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return "no answer in time"
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    if http_passes(head):
        return None
    status = head.split(b"\r\n", 1)[0][:80].decode("ascii", "replace")
    return f"answered {status!r}" if status else "closed without an answer"
