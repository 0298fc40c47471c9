"""tinit's own footprint stays flat: RSS, fds, one thread; and what its CPU time goes on.

Each is measured from the host by the soak's monitor. Flat means the same
after the warm-up as at the end, less what is bounded on purpose (the
``tinit logs`` rings, cgroup files of live services).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter
from typing import Final

from .evidence import Evidence
from .record import Check, Stats

RSS_BUDGET_KIB: Final = 2048  # per 10,000 restarts
CGROUP_FDS_PER_SERVICE: Final = 8  # stats files and event watches of one service's cgroup
RING_KIB: Final = 256  # what one service's `tinit logs` ring may hold (tinit.output.Ring)


def kind_of(link: str) -> str:
    """An fd's kind for a report: ``socket``, ``pipe``, ``anon_inode:inotify`` or the path."""
    return link.split(":[", 1)[0]


def check_rss(ev: Evidence, stats: Stats) -> Check:
    """RSS growth, less what the `tinit logs` rings took in (bounded, and checked here)."""
    first, last, _ = ev.warm_samples()
    if not first or not last:
        return Check("RSS flat", False, "not enough samples", ["no samples"])
    rss0 = sum(s.rss_kib for s in first) / len(first)
    rss1 = sum(s.rss_kib for s in last) / len(last)
    log0 = sum(s.log_kib for s in first) / len(first)
    log1 = sum(s.log_kib for s in last) / len(last)
    starts = ev.restarts_between(first[0].t, last[-1].t)
    budget = RSS_BUDGET_KIB * max(1.0, starts / 10_000)
    growth = (rss1 - log1) - (rss0 - log0)
    mon = ev.soak.monitor
    assert mon is not None
    peak = max(s.rss_kib for s in mon.samples)
    log_peak = max(s.log_kib for s in mon.samples)
    log_bound = ev.soak.args.services * RING_KIB
    stats["rss"] = {
        "warm": rss0,
        "end": rss1,
        "peak": peak,
        "starts": starts,
        "log_warm": log0,
        "log_end": log1,
        "log_peak": log_peak,
    }
    per10k = growth / max(starts, 1) * 10_000
    problems = []
    if growth >= budget:
        problems.append(f"grew {growth:.0f} KiB besides the log rings, budget {budget:.0f} KiB")
    if log_peak > log_bound:
        problems.append(f"log rings held {log_peak:.0f} KiB, bound {log_bound} KiB")
    return Check(
        "RSS flat",
        not problems,
        f"VmRSS {rss0 / 1024:.1f} MiB after warm-up -> {rss1 / 1024:.1f} MiB at the end, of"
        f" which `tinit logs` rings {log0 / 1024:.1f} -> {log1 / 1024:.1f} MiB (bound"
        f" {log_bound / 1024:.1f} MiB); the rest {growth:+.0f} KiB over {starts} starts"
        f" ({per10k:+.0f} KiB per 10,000; budget {budget:.0f} KiB); peak {peak / 1024:.1f} MiB",
        problems,
    )


def check_fds(ev: Evidence, stats: Stats) -> Check:
    """tinit's fds not held by live services do not grow; cgroup files stay bounded."""
    first, last, _ = ev.warm_samples()
    if not first or not last:
        return Check("fds flat", False, "not enough samples", ["no samples"])
    floor0 = min(s.fd_floor for s in first)
    floor1 = min(s.fd_floor for s in last)
    mon = ev.soak.monitor
    assert mon is not None
    most = max(s.fds for s in mon.samples)
    cgroup_most = max(s.cgroup_fds for s in mon.samples)
    cgroup_bound = ev.soak.args.services * CGROUP_FDS_PER_SERVICE
    stats["fds"] = {
        "floor_warm": floor0,
        "floor_end": floor1,
        "max": most,
        "cgroup_max": cgroup_most,
    }
    problems = []
    if floor1 > floor0:
        low0 = min(first, key=lambda s: s.fd_floor).floor_links
        low1 = min(last, key=lambda s: s.fd_floor).floor_links
        extra = Counter(kind_of(link) for link in low1) - Counter(kind_of(link) for link in low0)
        problems.append(
            f"fd floor grew from {floor0} to {floor1} (more: {dict(extra) or 'unknown'})"
        )
    if cgroup_most > cgroup_bound:
        problems.append(f"{cgroup_most} cgroup files open at once, bound {cgroup_bound}")
    return Check(
        "fds flat",
        not problems,
        f"open fds not held by a running service's pipes or a live service cgroup:"
        f" {floor0} after warm-up, {floor1} at the end (minimum over a window each);"
        f" at most {most} fds in all, {cgroup_most} of them cgroup files"
        f" (bound {cgroup_bound})",
        problems,
    )


def check_threads(ev: Evidence, stats: Stats) -> Check:
    """tinit never had a second thread."""
    mon = ev.soak.monitor
    assert mon is not None
    most = max((s.threads for s in mon.samples), default=0)
    return Check(
        "single thread",
        most == 1,
        f"tinit had {most} thread(s) at most over {len(mon.samples)} samples (it forks"
        " services from its one thread)",
        [] if most == 1 else [f"{most} threads"],
    )


def timeline(ev: Evidence, points: int = 8) -> list[list[str]]:
    """tinit's RSS, fds and CPU time at a few moments of the run, with starts so far."""
    mon = ev.soak.monitor
    assert mon is not None
    samples = [s for s in mon.samples if s.t <= ev.soak.t_chaos_end]
    if len(samples) < points:
        return []
    starts = sorted(e["_t"] for e in ev.events if e["event"] == "service_starting")
    rows = []
    for k in range(points):
        s = samples[round(k * (len(samples) - 1) / (points - 1))]
        rows.append(
            [
                f"{s.t - ev.soak.t_start:.0f}",
                str(bisect.bisect_right(starts, s.t)),
                f"{s.rss_kib / 1024:.1f}",
                f"{s.log_kib / 1024:.1f}",
                str(s.fds),
                str(s.fd_floor),
                f"{(s.cpu_ns - samples[0].cpu_ns) / 1e9:.1f}",
            ]
        )
    return rows


def cpu_figures(ev: Evidence, stats: Stats) -> None:
    """tinit's CPU time per service start and per reaped orphan (least squares per second)."""
    mon = ev.soak.monitor
    assert mon is not None
    samples = [s for s in mon.samples if s.t <= ev.soak.t_chaos_end]
    if len(samples) < 10:
        return
    starts = sorted(e["_t"] for e in ev.events if e["event"] == "service_starting")
    orphans = sorted(e["_t"] for e in ev.events if e["event"] == "orphan_reaped")
    rows = []
    for a, b in itertools.pairwise(samples):
        n_s = bisect.bisect_right(starts, b.t) - bisect.bisect_right(starts, a.t)
        n_o = bisect.bisect_right(orphans, b.t) - bisect.bisect_right(orphans, a.t)
        rows.append((float(n_s), float(n_o), 1.0, (b.cpu_ns - a.cpu_ns) / 1e6))
    coef = least_squares(rows)
    total_ms = (samples[-1].cpu_ns - samples[0].cpu_ns) / 1e6
    n_starts = ev.restarts_between(samples[0].t, samples[-1].t)
    span = samples[-1].t - samples[0].t
    stats["cpu"] = {
        "total_s": total_ms / 1000,
        "seconds": span,
        "starts": n_starts,
        "per_start_ms": total_ms / max(n_starts, 1),
        "fit_per_start_ms": coef[0] if coef else None,
        "fit_per_orphan_ms": coef[1] if coef else None,
        "fit_idle_ms_per_s": coef[2] if coef else None,
        "ticks": samples[-1].cpu_ticks - samples[0].cpu_ticks,
    }


def least_squares(rows: list[tuple[float, float, float, float]]) -> list[float] | None:
    """Solve y = a*x0 + b*x1 + c*x2 for (a, b, c) by the normal equations."""
    n = 3
    m = [[sum(r[i] * r[j] for r in rows) for j in range(n)] for i in range(n)]
    v = [sum(r[i] * r[3] for r in rows) for i in range(n)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-12:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        v[col], v[pivot] = v[pivot], v[col]
        for r in range(n):
            if r != col:
                k = m[r][col] / m[col][col]
                m[r] = [x - k * y for x, y in zip(m[r], m[col], strict=True)]
                v[r] -= k * v[col]
    return [v[i] / m[i][i] for i in range(n)]
