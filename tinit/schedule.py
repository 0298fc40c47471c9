"""When a scheduled job runs next: pure arithmetic on wall-clock times.

A ``schedule:`` is either a cron expression (five fields, or a macro such as
``@daily``) read in a time zone, or ``@every DURATION``, a fixed interval
counted from when tinit started the service. Everything here is a function
of its arguments: no clock is read and nothing sleeps, so the DST edges can
be tested with fixed datetimes. The runner (service.py) reads the wall clock,
asks here for the next time, and sleeps on trio's clock until then.

Cron expressions are evaluated by cronsim (no dependencies of its own, typed,
and it treats DST the way Debian's cron does: a job at a time that a spring
jump skips runs at the first minute after the jump, and a job at a time that
an autumn fall repeats runs once). It is imported only when a config has a
schedule, so ``tinit run -- CMD`` and the client commands never load it.
Time zones come from :mod:`zoneinfo`: the system's database, or the
``tzdata`` package where an image has none.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Final, TypeAlias, assert_never

if TYPE_CHECKING:
    from collections.abc import Mapping

#: The macros cron knows, as the five fields they stand for.
MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: The shortest ``@every`` interval: anything shorter is a busy loop in disguise.
MIN_EVERY: Final = 1.0
#: Missed runs counted one by one at most; past this a skip count saturates.
MAX_COUNTED: Final = 1000

_EVERY: Final = re.compile(r"@every\s+(?P<duration>\S+)")
_HINT: Final = (
    "write five cron fields (minute hour day month weekday), a macro"
    " (@hourly, @daily, @weekly, @monthly, @yearly, @midnight) or @every DURATION"
)


@dataclass(frozen=True, slots=True)
class Cron:
    """A five-field cron expression (macros already expanded), read in ``zone``."""

    fields: str
    zone: tzinfo


@dataclass(frozen=True, slots=True)
class Every:
    """A run every ``seconds``, counted from ``anchor`` (when the service started)."""

    seconds: float


#: How a schedule's times are found: one type per kind, for ``match``.
Timing: TypeAlias = Cron | Every


class ScheduleError(ValueError):
    """A schedule or time zone that can't be used; the message says why, on one line."""


def parse(expression: str, zone: tzinfo) -> Timing:
    """The timing of a ``schedule:`` string; raises ScheduleError with a fix."""
    from tinit.config._units import parse_duration

    text = " ".join(expression.split())
    every = _EVERY.fullmatch(text)
    if every is not None:
        try:
            seconds = parse_duration(every["duration"])
        except ValueError as exc:
            raise ScheduleError(str(exc)) from None
        if seconds < MIN_EVERY:
            raise ScheduleError(f"@every {every['duration']} is too short; the least is 1s")
        return Every(seconds)
    if text.startswith("@"):
        fields = MACROS.get(text.lower())
        if fields is None:
            raise ScheduleError(f"{text!r} is not a known macro; {_HINT}")
    else:
        fields = text
    if len(fields.split()) != 5:
        raise ScheduleError(f"{expression!r} has {len(fields.split())} fields; {_HINT}")
    cron = Cron(fields, zone)
    _cronsim(cron, datetime(2000, 1, 1, tzinfo=UTC))  # raises for a field cronsim refuses
    return cron


def zone_named(name: str | None, environ: Mapping[str, str]) -> tzinfo:
    """The zone ``name``, or the container's: ``TZ`` when set and known, else UTC.

    ``TZ=:Europe/Paris`` (the POSIX spelling with a colon) is read too. An
    unknown ``name`` raises ScheduleError; an unknown ``TZ`` is UTC, as libc
    does.
    """
    if name is not None:
        return _zone(name)
    tz = environ.get("TZ", "").removeprefix(":")
    if not tz:
        return UTC
    try:
        return _zone(tz)
    except ScheduleError:
        return UTC


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        why = "not in the time zone database (the system's zoneinfo or the tzdata package)"
        raise ScheduleError(f"{name!r} is {why}") from None


def next_after(timing: Timing, after: datetime, anchor: datetime) -> datetime:
    """The first run strictly after ``after`` (an aware datetime).

    ``anchor`` is when the service started: ``@every`` times are ``anchor +
    k * seconds``, so a slow run does not push every later run back.
    """
    match timing:
        case Every(seconds=seconds):
            steps = max(math.floor((after - anchor).total_seconds() / seconds) + 1, 1)
            return anchor + timedelta(seconds=steps * seconds)
        case Cron():
            return _cronsim(timing, after)
        case _:
            assert_never(timing)


def count_between(timing: Timing, start: datetime, end: datetime, anchor: datetime) -> int:
    """How many run times fall in (start, end]: the runs missed while one went on.

    Saturates at MAX_COUNTED, so a run that took a year under ``* * * * *``
    costs a bounded amount of work.
    """
    if end <= start:
        return 0
    match timing:
        case Every(seconds=seconds):
            first = (next_after(timing, start, anchor) - anchor).total_seconds() / seconds
            last = math.floor((end - anchor).total_seconds() / seconds)
            return max(0, min(last - round(first) + 1, MAX_COUNTED))
        case Cron():
            count, when = 0, start
            while count < MAX_COUNTED:
                when = _cronsim(timing, when)
                if when > end:
                    break
                count += 1
            return count
        case _:
            assert_never(timing)


def _cronsim(cron: Cron, after: datetime) -> datetime:
    """cronsim's next time after ``after``, in ``cron.zone``, as an aware datetime."""
    from cronsim import CronSim, CronSimError

    local = after.astimezone(cron.zone)
    try:
        return next(CronSim(cron.fields, local))
    except CronSimError as exc:
        raise ScheduleError(f"{cron.fields!r}: {exc}; {_HINT}") from None
    except StopIteration:
        raise ScheduleError(f"{cron.fields!r} never matches a date") from None
