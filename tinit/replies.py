"""What the client believes of a reply: its shape is checked before any of it is used.

The control socket's peer is checked to be root or the client's own user
(`tinit.client`), but a tinit of another version, a bug, or a broken
process of the same user can still answer anything. The client prints
these values and picks its exit code from them, so each reply is checked
here against the protocol first: a value of the wrong type is one
`ControlError` sentence and exit 1, never a traceback.

Like `tinit.client`, this module imports neither trio nor anything slow.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from .errors import ControlError

PROTOCOL_VERSION: Final = 1
_INT_LIMIT: Final = 2**64

#: keys every service in a ``status`` reply has, with the types allowed
_STATUS_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "name": (str,),
    "state": (str,),
    "pid": (int, type(None)),
    "uptime": (int, float, type(None)),
    "restarts": (int,),
    "last_exit": (dict, type(None)),
    "ready": (bool,),
    "memory": (int, type(None)),
    "pids": (int, type(None)),
}
#: keys a service may have besides, with the types allowed
_STATUS_OPTIONAL: Final[dict[str, tuple[type, ...]]] = {
    "completed": (bool,),
    "held": (bool,),
    "oom_kills": (int,),
    "log_bytes": (int,),
    "log_rotations": (int,),
    "next_run": (str,),
    "next_run_in": (int, float),
    "scheduled_runs": (int,),
    "schedule_skips": (int,),
    "status_text": (str,),
    "main_pid": (int,),
}
_RUN_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "ts": (int, float),
    "service": (str,),
    "stream": (str,),
    "lines": (list,),
}
_DIFF_KEYS: Final = ("added", "removed", "changed", "updated")


def parse_reply(line: bytes, path: str) -> dict[str, Any]:
    """One reply line as a dict with ``ok`` a bool (and ``error`` a str when it is false)."""
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        raise _malformed(path, "it is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("ok"), bool):
        raise _malformed(path, 'it is not a JSON object with "ok" true or false')
    version = message.get("v")
    if version != PROTOCOL_VERSION or isinstance(version, bool):
        raise ControlError(
            f"tinit on {path} speaks protocol version {_short(version)}, "
            f"this client {PROTOCOL_VERSION}: use the tinit of the same image"
        )
    if not message["ok"] and not isinstance(message.get("error", ""), str):
        raise _malformed(path, "its error is not a sentence")
    return message


def status_result(value: object, path: str) -> list[dict[str, Any]]:
    """The result of ``status``: a list of services with every field of its type."""
    if not isinstance(value, list):
        raise _malformed(path, "the status is not a list of services")
    return [_checked(s, _STATUS_FIELDS, _STATUS_OPTIONAL, "a service", path) for s in value]


def reload_result(value: object, path: str) -> dict[str, list[str]]:
    """The result of ``reload``: lists of service names by what happened to them."""
    if not isinstance(value, dict) or not all(_names(value.get(k, [])) for k in _DIFF_KEYS):
        raise _malformed(path, "the reload's result is not lists of service names")
    return {k: value.get(k, []) for k in _DIFF_KEYS}


def problems(reply: dict[str, Any], path: str) -> list[str]:
    """The ``problems`` of a refused reload: sentences, or none."""
    found = reply.get("problems", [])
    if not _names(found):
        raise _malformed(path, "the reload's problems are not sentences")
    return list(found)


def logs_header(value: object, path: str) -> list[str]:
    """The first result of ``logs``: ``{"services": [names]}``."""
    if not isinstance(value, dict) or set(value) != {"services"} or not _names(value["services"]):
        raise _malformed(path, "the logs do not start with a list of services")
    names: list[str] = value["services"]
    return names


def logs_part(value: object, path: str) -> list[dict[str, Any]] | None:
    """A later result of ``logs``: runs of lines (``{"lines": [...]}``), None at the end.

    Each run is ``{"ts", "service", "stream", "lines"}``, ``lines`` a list of strings.
    """
    if isinstance(value, dict) and value.get("end") is True:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("lines"), list):
        raise _malformed(path, "the logs are not runs of lines")
    runs = [_checked(run, _RUN_FIELDS, {}, "a run of log lines", path) for run in value["lines"]]
    if not all(_names(run["lines"]) for run in runs):
        raise _malformed(path, "'lines' of a run of log lines are not strings")
    return runs


def _checked(
    value: object,
    required: dict[str, tuple[type, ...]],
    optional: dict[str, tuple[type, ...]],
    what: str,
    path: str,
) -> dict[str, Any]:
    """``value``, a JSON object with every ``required`` key and the types given."""
    if not isinstance(value, dict):
        raise _malformed(path, f"{what} is not a JSON object")
    for key, types in required.items():
        if key not in value:
            raise _malformed(path, f"{what} has no {key!r}")
        if not _typed(value[key], types):
            raise _malformed(path, f"{key!r} of {what} is not of the right type")
    for key, types in optional.items():
        if key in value and not _typed(value[key], types):
            raise _malformed(path, f"{key!r} of {what} is not of the right type")
    return value


def _typed(value: object, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that true and false are not numbers here."""
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int):  # a count, a pid or bytes: it fits in 64 bits
        return int in types and -_INT_LIMIT <= value < _INT_LIMIT
    if isinstance(value, float):  # JSON as Python reads it has NaN and Infinity
        return float in types and math.isfinite(value)
    return isinstance(value, types)


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(n, str) for n in value)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _malformed(path: str, why: str) -> ControlError:
    return ControlError(f"the reply from {path} is not tinit's: {why}")
