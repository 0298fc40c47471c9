"""process-compose's readiness and liveness probes as tinit's ``ready`` and ``health``.

Both tools probe with a command or an HTTP GET; tinit's http probe speaks
plain HTTP only, so an https probe becomes a TCP connect to the same port.
The timings map where tinit has the key: ``period_seconds`` to ``interval``,
``timeout_seconds`` to ``timeout``, a liveness ``failure_threshold`` to
``failures``. tinit probes at once, succeeds on the first success, and
bounds readiness by ``ready.start_timeout`` rather than by a count of
failures, so ``initial_delay_seconds``, ``success_threshold`` and a
readiness ``failure_threshold`` are noted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from tinit.convert import _pc_values as values
from tinit.convert._pc_values import Bad

if TYPE_CHECKING:
    from tinit.convert._pc_process import Process

_TIMINGS: Final = ("initial_delay_seconds", "period_seconds", "timeout_seconds")
_COUNTS: Final = ("success_threshold", "failure_threshold")


def probe(p: Process, key: str, raw: Any, *, liveness: bool) -> dict[str, Any] | None:
    """The tinit probe for ``raw``, or None (noted) when it can't be written."""
    if not isinstance(raw, dict):
        raise Bad(f"{key} must be a mapping")
    check = _check(p, key, raw)
    if check is None:
        return None
    converted: dict[str, Any] = dict(check)
    for option in _TIMINGS:
        if option in raw:
            values.seconds(raw[option], what=f"a number of seconds for {option}")
    if raw.get("period_seconds"):
        converted["interval"] = values.duration(raw["period_seconds"])
    if raw.get("timeout_seconds"):
        converted["timeout"] = values.duration(raw["timeout_seconds"])
    if raw.get("initial_delay_seconds"):
        why = "tinit probes from the start, retrying every interval; nothing to wait for first"
        p.note(f"{key}.initial_delay_seconds", why)
    if raw.get("success_threshold", 1) not in (1, None):
        p.note(f"{key}.success_threshold", "tinit counts one success as enough")
    threshold = raw.get("failure_threshold")
    if threshold is not None and liveness:
        converted["failures"] = _count(threshold)
    elif threshold is not None:
        why = (
            "tinit retries a ready probe until ready.start_timeout (60s by default), then counts a"
            " failed start; it does not count failures"
        )
        p.note(f"{key}.failure_threshold", why)
    for option in raw:
        if option not in ("exec", "http_get", *_TIMINGS, *_COUNTS):
            p.note(f"{key}.{option}", "unknown key; not converted")
    return converted


def _count(raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        raise Bad(f"{values.show(raw)} is not a count of 1 or more")
    return raw


def _check(p: Process, key: str, raw: dict[str, Any]) -> dict[str, Any] | None:
    if "exec" in raw:
        spec = raw["exec"]
        if not isinstance(spec, dict) or not isinstance(spec.get("command"), str):
            raise Bad(f"{key}.exec needs a command")
        if spec.get("working_dir"):
            why = "tinit runs a probe's command in the service's own workdir"
            p.note(f"{key}.exec.working_dir", why)
        command, shell, bash = values.command(spec["command"], p.c.shell)
        if bash:
            p.note(f"{key}.exec.command", bash)
        return {"exec": ["sh", "-c", command] if shell else command}
    if "http_get" in raw:
        return _http(p, key, raw["http_get"])
    raise Bad(f"{key} has neither exec nor http_get")


def _http(p: Process, key: str, spec: Any) -> dict[str, Any] | None:
    if not isinstance(spec, dict):
        raise Bad(f"{key}.http_get must be a mapping")
    parts = {
        name: values.scalar(spec.get(name, default)) for name, default in _HTTP_DEFAULTS.items()
    }
    if any(values.has_template(text) for text in parts.values()):
        why = "holds a Go template ({{...}}), which is not evaluated: the probe is left out"
        p.note(f"{key}.http_get", why)
        return None
    host = p.value(parts["host"], f"{key}.http_get.host")
    port = p.value(parts["port"], f"{key}.http_get.port") if "port" in spec else ""
    path = p.value(parts["path"], f"{key}.http_get.path")
    if spec.get("headers"):
        p.note(f"{key}.http_get.headers", "tinit's http probe sends no extra headers")
    scheme = parts["scheme"].lower()
    if scheme == "https":
        why = "tinit's http probe speaks plain HTTP only: it became a TCP connect to the same port"
        p.note(f"{key}.http_get.scheme", why)
        return {"tcp": f"{host}:{port or 443}"}
    if scheme != "http":
        raise Bad(f"{key}.http_get.scheme: {scheme!r} is not http or https")
    where = f"{host}:{port}" if port else host
    return {"http": f"http://{where}/{path.lstrip('/')}"}


_HTTP_DEFAULTS: Final = {"host": "127.0.0.1", "scheme": "http", "path": "/", "port": ""}

__all__ = ["probe"]
