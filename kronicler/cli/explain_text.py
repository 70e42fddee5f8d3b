"""``kronicler explain`` as text: the slow calls against the rest, one section per question.

Each section leads with its strongest finding and shows the counts behind every share, plus an
example slow call (its trace id) per finding, so a reader can check any line in a trace viewer.
Only the top rows of each section are shown; ``--json`` has every finding.
"""

from __future__ import annotations

from kronicler.cli.render import table
from kronicler.cli.units import format_ns, format_time
from kronicler.query import Call, ChildFinding, Explanation, quantile_label

#: Rows shown per section.
TOP = 5


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _example(calls: tuple[Call, ...]) -> str:
    if not calls:
        return ""
    c = calls[0]
    return f"{c.trace_id_hex} ({format_ns(c.duration)})"


def explain_text(e: Explanation) -> str:
    if e.count == 0:
        return f"{e.function}: no calls in this range"
    how = ""
    if e.quantile is not None:
        label = quantile_label(e.quantile)
        # A frontend over more calls than it gathers exactly takes the merged summaries' quantile.
        how = (f" (the {label})" if e.threshold_exact else
               f" (about the {label}: the quantile of the nodes' merged summaries, within 1%)")  # fmt: skip
    base = e.count - e.slow_count
    lines = [
        f"{e.function}: {e.slow_count:,} of {e.count:,} calls slower than "
        f"{format_ns(e.threshold)}{how}, {format_time(e.since)} to {format_time(e.until)}",
    ]
    if e.slow_count == 0:
        lines.append("no call is slower than the threshold")
        return "\n".join(lines)
    lines.append(
        f"slow calls take {format_ns(e.slow_time / e.slow_count)} on average, the other "
        f"{base:,} take {format_ns(e.baseline_time / base if base else None)}"
    )
    lines += ["", "Attribute values over-represented among slow calls:"]
    if e.attributes:
        rows = [
            [f"{a.key}={a.value}", f"{a.slow:,} ({_pct(a.slow, a.slow_total)})",
             f"{a.baseline:,} ({_pct(a.baseline, a.baseline_total)})", f"{a.score:+.2f}",
             "-" if a.lift is None else f"{a.lift:.1f}x", _example(a.examples)]
            for a in e.attributes[:TOP]
        ]  # fmt: skip
        lines.append(table(["attribute", "slow calls", "other calls", "score", "lift",
                            "e.g. trace"], rows))  # fmt: skip
    else:
        lines.append("  none: slow calls carry the same attribute values as the others")
    lines += ["", "Time per call in child functions (slow calls against the others):"]
    children = [*e.children[:TOP], *([e.self_time] if e.self_time is not None else [])]
    lines.append(table(["function", "slow mean", "other mean", "extra", "share of slow",
                        "share of others", "e.g. trace"],
                       [_child_row(c) for c in children]))  # fmt: skip
    lines += ["", _when_line(e)]
    for r in e.releases:
        mark = "  <- the slow share rose from here" if r.lines_up else ""
        lines.append(
            f"  {r.key}={r.version}: first seen {format_time(r.first_start)}, {r.slow:,} of "
            f"{r.calls:,} calls slow; slow share before {_pct(r.before_slow, r.before_calls)}, "
            f"from then on {_pct(r.after_slow, r.after_calls)}{mark}"
        )
    lines += ["", "Slowest calls:"]
    lines += [f"  {format_ns(c.duration)} at {format_time(c.start)} trace {c.trace_id_hex} span "
              f"{c.span_id_hex}" for c in e.examples]  # fmt: skip
    return "\n".join(lines)


def _child_row(c: ChildFinding) -> list[str]:
    return [c.function, format_ns(c.slow_mean), format_ns(c.baseline_mean),
            format_ns(c.extra), _share(c.slow_share), _share(c.baseline_share),
            _example(c.examples)]  # fmt: skip


def _when_line(e: Explanation) -> str:
    peak = max(e.series, key=lambda b: (b.slow / b.calls if b.calls else 0.0, b.slow))
    how = "clustered in time" if e.clustered else "spread over the range"
    return (
        f"When: slow calls are {how} (cluster score {e.cluster_score:.2f}; about 1 = even, "
        f">= 3 clustered); the highest slow share is {_pct(peak.slow, peak.calls)} of {peak.calls:,} calls in "
        f"the {format_ns(e.step)} from {format_time(peak.start)}"
    )
