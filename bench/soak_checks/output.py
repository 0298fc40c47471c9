"""What the services wrote came out of tinit whole: each line once, in order, and the junk.

The lines themselves were read back into :class:`Stream` s; this compares
them with what every run's journal says it wrote, and flags anything tinit
printed that no service wrote.
"""

from __future__ import annotations

import zlib
from collections import Counter

from .evidence import Evidence
from .record import Check, Stats
from .streams import PIPE_BUF


def check_output(ev: Evidence, stats: Stats) -> Check:
    """Every line of every run came out once, in order and untorn; no line from nobody."""
    problems: list[str] = []
    lines = long_lines = nbytes = 0
    for name, runs in ev.runs.items():
        spec = ev.soak.by_name[name]
        for stream_name in ("o", "e"):
            stream = ev.output.streams.get((name, stream_name))
            if stream is not None:
                problems.extend(f"{name}/{stream_name}: {p}" for p in stream.problems)
                lines += stream.lines
                long_lines += stream.long_lines
                nbytes += stream.bytes
            for run in runs:
                intent = run.intent
                if intent is None:
                    continue
                k = intent["run"]
                seqs = stream.seqs.get(k, []) if stream else []
                torn = stream.torn.get(k, []) if stream else []
                want = intent["out" if stream_name == "o" else "err"]
                if run.wrote:
                    if seqs != list(range(want)) or torn:
                        problems.append(
                            f"{name}/{stream_name} run {k} ({spec.mode}): wrote lines"
                            f" 0..{want - 1}, got {summarize(seqs, want)}"
                            + (f", torn: {torn}" if torn else "")
                        )
                elif (
                    seqs != list(range(len(seqs)))
                    or len(seqs) > want
                    or (torn and torn != [seqs[-1]])
                ):
                    problems.append(
                        f"{name}/{stream_name} run {k} ({spec.mode}, cut short): got"
                        f" {summarize(seqs, want)}, torn {torn}"
                    )
    for (name, stream_name), stream in ev.output.streams.items():
        meant = {r.intent["run"] for r in ev.runs.get(name, []) if r.intent}
        for k in sorted(set(stream.seqs) - meant):
            problems.append(
                f"{name}/{stream_name}: lines of run {k}, which tinit never reported"
                " starting or which never wrote its intent"
            )
    for line in ev.output.spliced_short[:10]:
        whose = "a raw service's own" if line.startswith(b"@S ") else "tinit's"
        problems.append(
            f"another writer's line landed inside a line of {whose} no longer than"
            f" PIPE_BUF ({PIPE_BUF} bytes): it was written in more than one write(2) to"
            f" the full pipe: {line[:100]!r}"
        )
    for line in ev.output.unattributed[:10]:
        problems.append(f"stdout line from nobody: {line[:100]!r}")
    stats["lines"] = lines
    stats["long_lines"] = long_lines
    stats["output_bytes"] = nbytes
    stats["spliced_long"] = ev.output.spliced_long
    return Check(
        "output lines",
        not problems,
        f"{lines} checksummed lines ({long_lines} of them 64 KiB to 1 MiB, reassembled from"
        f" 64 KiB pieces), {nbytes / 1e6:.1f} MB: each exactly once, in order, untorn;"
        f" {ev.output.spliced_long} lines longer than PIPE_BUF had a raw service's line spliced"
        " in on a full pipe (a limit of raw mode; their bytes are all there)",
        problems,
    )


def check_junk(ev: Evidence, stats: Stats) -> Check:
    """Binary junk between lines came out byte for byte (prefix) or one record a line (JSON)."""
    problems: list[str] = []
    segments = nbytes = 0
    for name, runs in ev.runs.items():
        spec = ev.soak.by_name[name]
        stream = ev.output.streams.get((name, "o"))
        for run in runs:
            if run.intent is None or not run.intent["junk"] or not run.wrote:
                continue
            for after, (size, crc, newlines) in run.intent["junk"].items():
                segments += 1
                got = stream.junk_after.get((run.intent["run"], int(after))) if stream else None
                if got is None:
                    problems.append(f"{name} run {run.intent['run']}: junk after {after} lost")
                    continue
                if spec.mode == "prefix":
                    data = b"\n".join(got) + b"\n"
                    nbytes += len(data)
                    if len(data) != size or zlib.crc32(data) != crc:
                        problems.append(
                            f"{name} run {run.intent['run']}: junk after line {after} came"
                            f" out as {len(data)} bytes (crc {zlib.crc32(data):08x}), not"
                            f" {size} (crc {crc:08x})"
                        )
                elif len(got) != newlines:
                    problems.append(
                        f"{name} run {run.intent['run']}: junk after {after}: {len(got)}"
                        f" JSON records for {newlines} lines"
                    )
    return Check(
        "binary junk",
        not problems,
        f"{segments} junk segments; prefix mode passed {nbytes} bytes on byte for byte,"
        " JSON mode one record per junk line",
        problems,
    )


def summarize(seqs: list[int], want: int) -> str:
    """How a run's sequence numbers differ from 0..want-1, for a problem line."""
    missing = sorted(set(range(want)) - set(seqs))
    dups = sorted(k for k, n in Counter(seqs).items() if n > 1)
    return (
        f"{len(seqs)} lines"
        + (f", missing {missing[:10]}" if missing else "")
        + (f", repeated {dups[:10]}" if dups else "")
        + ("" if seqs == sorted(seqs) else ", out of order")
    )
