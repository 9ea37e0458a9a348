"""What changed between two runs, clause by clause (the nightly diff).

Records are matched on (clause, device, transport).  Each changed record lands in
exactly one category, the first that fits:

- newly failing: now FAIL, before anything else (including absent or UNTESTED);
- newly covered: before absent or UNTESTED, now judged (and not FAIL);
- newly passing: now PASS, before judged otherwise;
- no longer covered: before judged, now absent or UNTESTED;
- verdict changed: any other verdict change (e.g. PASS -> ERROR, NA -> WARN);
- evidence changed: same verdict, but a judgment observed a different value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..results import ClauseResult, RunResults, Verdict
from .view import natural_key, show

Key = tuple[str, str, str]  # clause, device, transport

CATEGORIES = ("newly_failing", "newly_covered", "newly_passing", "no_longer_covered",
              "verdict_changed", "evidence_changed")
TITLES = {
    "newly_failing": "Newly failing",
    "newly_covered": "Newly covered",
    "newly_passing": "Newly passing",
    "no_longer_covered": "No longer covered",
    "verdict_changed": "Verdict changed",
    "evidence_changed": "Evidence changed (same verdict)",
}


@dataclass
class ObservedChange:
    check: str
    what: str
    old: str
    new: str

    def to_json(self) -> dict:
        return {"check": self.check, "what": self.what, "old": self.old, "new": self.new}


@dataclass
class Change:
    clause: str
    device: str
    transport: str
    level: str
    old: str | None  # verdict, or None when the record was absent
    new: str | None
    waiver: dict | None = None  # the new record's waiver
    observed: list[ObservedChange] = field(default_factory=list)

    @property
    def key(self) -> Key:
        return (self.clause, self.device, self.transport)

    def to_json(self) -> dict:
        d: dict = {"clause": self.clause, "device": self.device, "transport": self.transport,
                   "level": self.level, "old": self.old, "new": self.new,
                   "observed": [o.to_json() for o in self.observed]}
        if self.waiver:
            d["waiver"] = self.waiver
        return d


@dataclass
class Comparison:
    old_environment: dict
    new_environment: dict
    newly_failing: list[Change] = field(default_factory=list)
    newly_covered: list[Change] = field(default_factory=list)
    newly_passing: list[Change] = field(default_factory=list)
    no_longer_covered: list[Change] = field(default_factory=list)
    verdict_changed: list[Change] = field(default_factory=list)
    evidence_changed: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def unwaived_newly_failing(self) -> list[Change]:
        return [c for c in self.newly_failing if not c.waiver]

    def to_json(self) -> dict:
        d: dict = {
            "old": _run_summary(self.old_environment),
            "new": _run_summary(self.new_environment),
            "counts": {c: len(getattr(self, c)) for c in CATEGORIES} | {"unchanged": self.unchanged},
        }
        for c in CATEGORIES:
            d[c] = [ch.to_json() for ch in getattr(self, c)]
        return d


def _run_summary(env: dict) -> dict:
    keys = ("run_id", "spec_revision", "qemu_version", "accelerator", "image_digest",
            "started", "finished")
    return {k: env[k] for k in keys if env.get(k) not in (None, "")}


def _judged(v: Verdict | None) -> bool:
    return v is not None and v is not Verdict.UNTESTED


def _observations(r: ClauseResult) -> dict[tuple[str, str], str]:
    """(check, what) -> observed value as shown; the identity of one observation."""
    out: dict[tuple[str, str], str] = {}
    for j in (r.evidence or {}).get("judgments", []):
        key = (str(j.get("check", "")), str(j.get("what", "")))
        value = show(j.get("observed"))
        # Two judgments of one check on one thing: keep all values, in order.
        out[key] = f"{out[key]}; {value}" if key in out else value
    return out


def _observed_changes(old: ClauseResult, new: ClauseResult) -> list[ObservedChange]:
    before, after = _observations(old), _observations(new)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        a, b = before.get(key), after.get(key)
        # An observation only on one side is a change of checks, not of evidence.
        if a is not None and b is not None and a != b:
            changes.append(ObservedChange(check=key[0], what=key[1], old=a, new=b))
    return changes


def _category(old: ClauseResult | None, new: ClauseResult | None) -> str | None:
    ov = old.verdict if old else None
    nv = new.verdict if new else None
    if nv is Verdict.FAIL and ov is not Verdict.FAIL:
        return "newly_failing"
    if not _judged(ov) and _judged(nv):
        return "newly_covered"
    if nv is Verdict.PASS and ov is not Verdict.PASS:
        return "newly_passing"
    if _judged(ov) and not _judged(nv):
        return "no_longer_covered"
    if ov != nv:
        return "verdict_changed"
    return None


def compare(old: RunResults, new: RunResults) -> Comparison:
    before = {(r.clause, r.device, r.transport): r for r in old.results}
    after = {(r.clause, r.device, r.transport): r for r in new.results}
    comparison = Comparison(old_environment=old.environment or {},
                            new_environment=new.environment or {})
    for key in sorted(before.keys() | after.keys(),
                      key=lambda k: (k[1], k[2], natural_key(k[0]))):
        o, n = before.get(key), after.get(key)
        change = Change(clause=key[0], device=key[1], transport=key[2],
                        level=(n.level if n else "") or (o.level if o else ""),
                        old=o.verdict.value if o else None, new=n.verdict.value if n else None,
                        waiver=n.waiver if n else None)
        category = _category(o, n)
        if o is not None and n is not None:
            change.observed = _observed_changes(o, n)
            if category is None and change.observed:
                category = "evidence_changed"
        if category is None:
            comparison.unchanged += 1
        else:
            getattr(comparison, category).append(change)
    return comparison


def exit_code(comparison: Comparison) -> int:
    """0 no new FAIL; 1 a clause newly FAILs (a newly failing clause that is already
    waived in the new run does not count: the waiver is a decision someone made)."""
    return 1 if comparison.unwaived_newly_failing else 0


def _line(c: Change) -> str:
    old = c.old or "absent"
    new = c.new or "absent"
    level = f" [{c.level}]" if c.level else ""
    text = f"  {c.clause}{level} on {c.device}@{c.transport}: {old} -> {new}"
    if c.waiver:
        text += f"  (waived until {c.waiver.get('expires')}: {c.waiver.get('reason')})"
    for o in c.observed:
        what = f"{o.what}: " if o.what else ""
        text += f"\n      {what}observed {o.old} -> {o.new}   ({o.check})"
    return text


def _describe_run(summary: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in summary.items()) or "(no environment recorded)"


def render_text(comparison: Comparison) -> str:
    old = _run_summary(comparison.old_environment)
    new = _run_summary(comparison.new_environment)
    out = [f"old: {_describe_run(old)}", f"new: {_describe_run(new)}"]
    # What changed underneath the device explains many verdict changes: say it first.
    moved = [k for k in ("spec_revision", "qemu_version", "accelerator", "image_digest")
             if old.get(k) != new.get(k)]
    for k in moved:
        out.append(f"  {k} changed: {old.get(k, '?')} -> {new.get(k, '?')}")
    for category in CATEGORIES:
        changes = getattr(comparison, category)
        if not changes:
            continue
        out.append("")
        out.append(f"{TITLES[category]} ({len(changes)}):")
        out += [_line(c) for c in changes]
    counts = ", ".join(f"{len(getattr(comparison, c))} {TITLES[c].split(' (')[0].lower()}"
                       for c in CATEGORIES)
    out.append("")
    out.append(f"summary: {counts}, {comparison.unchanged} unchanged")
    regressions = len(comparison.unwaived_newly_failing)
    out.append(f"compare: {regressions} clause record{'s' if regressions != 1 else ''} newly FAIL"
               f" (exit {exit_code(comparison)})")
    return "\n".join(out)
