"""What a run means for a CI gate: its exit code and the end-of-run summary table.

Exit codes follow INTERFACES.md: a finding outranks a harness error, and a waived
failure is shown everywhere but never fails the gate.
"""

from __future__ import annotations

from ..results import SHOULD_LEVELS, ClauseResult, RunResults, Verdict
from ..transports import ALL_VARIANTS

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_HARNESS_ERROR = 3

# The order verdicts are shown in everywhere: what needs attention first.
DISPLAY_ORDER = (Verdict.FAIL, Verdict.WARN, Verdict.ERROR, Verdict.PASS, Verdict.NA,
                 Verdict.UNTESTED)


def is_must_failure(record: ClauseResult) -> bool:
    # A FAIL means a MUST was broken by definition; only an explicit SHOULD level (a
    # mislabelled record) keeps it from counting.
    return record.verdict is Verdict.FAIL and record.level not in SHOULD_LEVELS


def gate_failures(results: RunResults, strict: bool = False) -> list[ClauseResult]:
    """The records that fail the gate: unwaived MUST failures (and with strict, WARNs)."""
    failing = []
    for r in results.results:
        if r.waiver:
            continue
        if is_must_failure(r) or (strict and r.verdict in (Verdict.FAIL, Verdict.WARN)):
            failing.append(r)
    return failing


def harness_errors(results: RunResults) -> int:
    """How many clause records (or clause-less checks) the harness left without a verdict."""
    records = sum(1 for r in results.results if r.verdict is Verdict.ERROR)
    clauseless = sum(1 for c in results.checks if c.verdict is Verdict.ERROR and not c.clauses)
    return records + clauseless


def exit_code_for_run(results: RunResults, strict: bool = False) -> int:
    """0 clean; 1 an unwaived MUST failed (with ``strict``: or an unwaived WARN); 3 no
    failure, but harness errors left checks without a verdict."""
    if gate_failures(results, strict):
        return EXIT_FINDING
    if harness_errors(results):
        return EXIT_HARNESS_ERROR
    return EXIT_OK


def gate_sentence(results: RunResults, strict: bool = False) -> str:
    """One line saying what the gate decided and why."""
    failing = gate_failures(results, strict)
    waived = sum(1 for r in results.results if r.waiver)
    waived_note = f" ({waived} waived finding{'s' if waived != 1 else ''} not counted)" if waived else ""
    if failing:
        musts = sum(1 for r in failing if r.verdict is Verdict.FAIL)
        warns = len(failing) - musts
        parts = []
        if musts:
            parts.append(f"{musts} unwaived MUST failure{'s' if musts != 1 else ''}")
        if warns:
            parts.append(f"{warns} unwaived SHOULD warning{'s' if warns != 1 else ''} (strict)")
        return f"gate: FAIL (exit 1): {', '.join(parts)}{waived_note}"
    errors = harness_errors(results)
    if errors:
        return (f"gate: INCOMPLETE (exit 3): no failure, but {errors} result"
                f"{'s' if errors != 1 else ''} left without a verdict by harness errors"
                f"{waived_note}")
    return f"gate: PASS (exit 0){waived_note}"


def transport_order(names) -> list[str]:
    """Transports in the canonical order of INTERFACES.md, unknown names after."""
    names = set(names)
    known = [t for t in ALL_VARIANTS if t in names]
    return known + sorted(names - set(known))


def summary_table(results: RunResults, strict: bool = False) -> str:
    """A compact device × transport table of verdict counts, for the end of a run."""
    counts: dict[tuple[str, str], dict[str, int]] = {}
    for r in results.results:
        row = counts.setdefault((r.device, r.transport), {})
        row[r.verdict.value] = row.get(r.verdict.value, 0) + 1
        if r.waiver:
            row["waived"] = row.get("waived", 0) + 1
    columns = [v.value for v in DISPLAY_ORDER] + ["waived"]
    devices = sorted({d for d, _ in counts})
    keys = []
    for d in devices:
        keys += [(d, t) for t in transport_order(t for dd, t in counts if dd == d)]
    header = ["device", "transport", *columns]
    rows = [[d, t, *(str(counts[(d, t)].get(c, 0)) for c in columns)] for d, t in keys]
    total = {c: sum(counts[k].get(c, 0) for k in keys) for c in columns}
    rows.append(["total", "", *(str(total[c]) for c in columns)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]

    def line(cells) -> str:
        left = [str(c).ljust(w) for c, w in zip(cells[:2], widths[:2], strict=True)]
        right = [str(c).rjust(w) for c, w in zip(cells[2:], widths[2:], strict=True)]
        return "  ".join(left + right).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out += [line(r) for r in rows[:-1]]
    if keys:
        out.append(line(["-" * w for w in widths]))
    out.append(line(rows[-1]))
    out.append(gate_sentence(results, strict))
    return "\n".join(out)
