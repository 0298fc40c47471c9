"""The value types of the config file, parsed from and formatted back to text.

Durations, sizes, signals, capability names, addresses, URLs, umasks, output
modes and env files. Each ``parse_*`` takes a value as YAML produced it (a
number or a string) and returns the canonical value, or raises ValueError with
a sentence for the user. Each ``format_*`` is its inverse, what ``tinit
check`` prints, chosen so that parsing it again gives the same value. Nothing
here knows where in the file a value came from; ``loader`` adds that.
"""

from __future__ import annotations

import difflib
import math
import re
import signal
import urllib.parse
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

_DURATION: Final = re.compile(r"(?P<sign>[-+]?)(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<unit>ms|s|m|h)?")
# (multiplier, divisor): dividing keeps "100ms" exactly equal to 0.1.
_DURATION_UNITS: Final = {"ms": (1, 1000), "s": (1, 1), "m": (60, 1), "h": (3600, 1)}
_DURATION_HINT: Final = "write a number of seconds, or a number with ms, s, m or h (250ms, 10s, 2m)"

_SIZE: Final = re.compile(
    r"(?P<num>\d+(?:\.\d*)?|\.\d+)\s?(?P<unit>[KMGT])?(?:I?B)?", re.IGNORECASE
)
_SIZE_UNITS: Final = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE_HINT: Final = "write a number of bytes, or a number with K, M, G or T (512K, 256M, 1G)"

OUTPUT_MODES: Final = ("prefix", "raw", "json", "null")
_OUTPUT_HINT: Final = "write prefix, raw, json, null or file:/path"
ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")

_SIGNAL_NAMES: Final = {
    name: int(sig)
    for name, sig in signal.Signals.__members__.items()
    if not name.startswith("SIGRT")
}
_RT_SIGNAL: Final = re.compile(r"SIGRT(?P<base>MIN|MAX)(?P<offset>[-+]\d+)?")

# Linux capabilities without the CAP_ prefix. Capability numbers are kernel ABI
# (<linux/capability.h>): the index in this tuple is the number.
CAPABILITY_NAMES: Final = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)  # fmt: skip
CAPABILITIES: Final = frozenset(CAPABILITY_NAMES)


def show(value: object) -> str:
    """How a value from the file is quoted in a message: as YAML would spell it."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return str(value)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    matches = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


def parse_duration(value: object) -> float:
    """Seconds from ``250ms``, ``10s``, ``2m``, ``1h`` or a plain number of seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{show(value)} is not a duration; {_DURATION_HINT}")
    try:
        if isinstance(value, str):
            match = _DURATION.fullmatch(value.strip())
            if match is None:
                raise ValueError(f"{show(value)} is not a duration; {_DURATION_HINT}")
            multiplier, divisor = _DURATION_UNITS[match["unit"] or "s"]
            seconds = float(match["sign"] + match["num"]) * multiplier / divisor
        else:
            seconds = float(value)
    except OverflowError:
        seconds = math.inf
    if not math.isfinite(seconds):
        raise ValueError(f"{show(value)} is not a finite duration")
    if seconds < 0:
        raise ValueError(f"{show(value)} is negative; a duration must be 0 or more")
    return seconds


def format_duration(seconds: float) -> str | float:
    """The shortest unit spelling of ``seconds`` that parses back to the same value."""
    if seconds == 0:
        return "0s"
    candidates: list[str] = []
    for unit, scale in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= scale and seconds % scale == 0:
            candidates.append(f"{int(seconds) // scale}{unit}")
    candidates.append(f"{round(seconds * 1000)}ms")
    for text in candidates:
        if parse_duration(text) == seconds:
            return text
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``512K``, ``256M``, ``1G`` (powers of 1024) or a plain number of bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{show(value)} is not a size; {_SIZE_HINT}")
    if isinstance(value, int):
        size = value
    else:
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{show(value)} is not a size; {_SIZE_HINT}")
        unit = _SIZE_UNITS[match["unit"].upper()] if match["unit"] else 1
        size = int(float(match["num"]) * unit)
    if size < 0:
        raise ValueError(f"{show(value)} is negative; a size must be 0 or more")
    return size


def format_size(size: int) -> str | int:
    """``size`` in the largest unit that divides it, or as a plain number of bytes."""
    for unit in "TGMK":
        scale = _SIZE_UNITS[unit]
        if size and size % scale == 0:
            return f"{size // scale}{unit}"
    return size


def parse_signal(value: object) -> int:
    """A signal number from ``SIGTERM``, ``TERM``, ``SIGRTMIN+3`` or a number."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{show(value)} is not a signal; write a name like SIGTERM or a number")
    if isinstance(value, int) or re.fullmatch(r"[0-9]+", value.strip()):
        return _signal_number(int(value))
    name = value.strip().upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if name in _SIGNAL_NAMES:
        return _SIGNAL_NAMES[name]
    match = _RT_SIGNAL.fullmatch(name)
    if match is None:
        choices = [*_SIGNAL_NAMES, "SIGRTMIN", "SIGRTMAX"]
        raise ValueError(f"unknown signal {show(value)}{did_you_mean(name, choices)}")
    base = signal.SIGRTMIN if match["base"] == "MIN" else signal.SIGRTMAX
    number = int(base) + int(match["offset"] or 0)
    if not signal.SIGRTMIN <= number <= signal.SIGRTMAX:
        raise ValueError(
            f"{show(value)} is outside the real-time signals "
            f"SIGRTMIN..SIGRTMAX ({int(signal.SIGRTMIN)}..{int(signal.SIGRTMAX)})"
        )
    return number


def _signal_number(number: int) -> int:
    if number not in signal.valid_signals():
        raise ValueError(f"there is no signal number {number} on this system")
    return number


def format_signal(number: int) -> str:
    """The name of a signal number: ``SIGTERM``, ``SIGRTMIN+3``."""
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return signal.Signals(number).name


def parse_capability(value: object) -> str:
    """A capability name in upper case without ``CAP_``, or ``ALL``."""
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not a capability name; write one like NET_ADMIN")
    name = value.strip().upper().removeprefix("CAP_")
    if name != "ALL" and name not in CAPABILITIES:
        hint = did_you_mean(name, sorted(CAPABILITIES | {"ALL"}))
        raise ValueError(f"unknown capability {show(value)}{hint}")
    return name


def parse_address(value: object, default_host: str) -> tuple[str, int]:
    """``(host, port)`` from ``host:port``, ``[::1]:port``, ``:port`` or a port number."""
    if isinstance(value, int) and not isinstance(value, bool):
        host, port = default_host, str(value)
    elif isinstance(value, str):
        host, colon, port = value.rpartition(":")
        if not colon:
            raise ValueError(f"{value!r} has no port; write host:port, like 127.0.0.1:80")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            raise ValueError(f"write the IPv6 address in {value!r} in brackets, like [::1]:80")
        if not re.fullmatch(r"[A-Za-z0-9_.:%-]*", host):
            raise ValueError(f"{host!r} is not a host name or address")
        host = host or default_host
    else:
        raise ValueError(f"{show(value)} is not an address; write host:port, like 127.0.0.1:80")
    if not re.fullmatch(r"[0-9]{1,5}", port) or not 1 <= int(port) <= 65535:
        raise ValueError(f"port {port!r} is not a number from 1 to 65535")
    return host, int(port)


def format_address(address: tuple[str, int]) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_http_url(url: str) -> str:
    """``url`` itself, if it is a plain ``http://`` URL with a host."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a valid URL ({exc})") from None
    if parts.scheme == "https":
        raise ValueError(
            "https is not supported; probe the service's plain http port, or use an exec probe"
        )
    if parts.scheme != "http" or not parts.hostname or port == 0:
        raise ValueError(f"{url!r} is not an http:// URL, like http://127.0.0.1:8000/healthz")
    return url


def parse_umask(value: object) -> int:
    """A umask from a string of octal digits (``"022"``) or an integer mode."""
    if isinstance(value, str) and re.fullmatch(r"[0-7]{1,4}", value):
        mode = int(value, 8)
    elif isinstance(value, int) and not isinstance(value, bool):
        mode = value
    else:
        raise ValueError(f'{show(value)} is not an octal mode; write one like "022"')
    if not 0 <= mode <= 0o777:
        raise ValueError(f'{show(value)} is out of range; a umask goes from "000" to "777"')
    return mode


def parse_output(value: object) -> str:
    """An output mode: prefix, raw, json, null (YAML's null too) or ``file:/abs/path``."""
    if value is None:
        return "null"
    if not isinstance(value, str):
        raise ValueError(f"{show(value)} is not an output mode; {_OUTPUT_HINT}")
    if value.startswith("file:"):
        target = value.removeprefix("file:")
        if not target:
            raise ValueError("file: needs a path, like file:/var/log/web.log")
        if not target.startswith("/"):
            raise ValueError(f"{target!r} is not an absolute path; write file:/path")
    elif value not in OUTPUT_MODES:
        hint = did_you_mean(value, OUTPUT_MODES) or f"; {_OUTPUT_HINT}"
        raise ValueError(f"unknown value {value!r}{hint}")
    return value


def parse_env_file(text: str) -> tuple[dict[str, str], list[tuple[int, str]]]:
    """The variables of an env file, and (line number, problem) for each bad line.

    Lines are ``KEY=VALUE`` with an optional ``export`` in front; the value may
    be wrapped in single quotes (taken as is) or double quotes (where ``\\"``,
    ``\\\\`` and ``\\n`` are escapes). Blank lines and ``#`` lines are skipped.
    """
    values: dict[str, str] = {}
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "\0" in line:
            problems.append((number, "contains a NUL character (\\0), which no variable can hold"))
            continue
        if re.match(r"export\s", line):
            line = line.removeprefix("export").lstrip()
        key, equals, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not ENV_NAME.fullmatch(key):
            problems.append((number, f"expected KEY=VALUE, got {raw.strip()!r}"))
            continue
        try:
            values[key] = _unquote(value)
        except ValueError as exc:
            problems.append((number, f"{key}: {exc}"))
    return values, problems


def _unquote(value: str) -> str:
    if not value or value[0] not in "'\"":
        return value
    if len(value) < 2 or value[-1] != value[0]:
        raise ValueError(f"the quote {value[0]} is not closed")
    if value[0] == "'":
        return value[1:-1]
    escapes = {"\\": "\\", '"': '"', "n": "\n"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m[1], m[0]), value[1:-1])
