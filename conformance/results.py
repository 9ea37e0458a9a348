"""The verdict model and the run's results, as written to ``results.json``.

Flow: a check records *judgments* (one per clause it looked at, with observed vs
expected values); the plugin wraps them into a *check outcome* per check × device ×
transport; ``rollup`` folds the outcomes into one *clause result* per clause × device ×
transport.  Reports read ``RunResults`` only; they never re-run anything.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class Verdict(StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"  # a MUST / MUST NOT broken
    WARN = "WARN"  # a SHOULD / SHOULD NOT broken
    NA = "NA"  # the clause does not apply here (transport, feature, proposal absent)
    ERROR = "ERROR"  # the harness could not reach or observe the device
    UNTESTED = "UNTESTED"  # catalogued, no check judged it



# When several checks judge one clause, the clause takes the first of these that any
# check gave.  A finding outranks a harness error (a finding is a finding), and an
# error is never hidden behind a PASS.
ROLLUP_ORDER = (Verdict.FAIL, Verdict.ERROR, Verdict.WARN, Verdict.PASS, Verdict.NA,
                Verdict.UNTESTED)

MUST_LEVELS = frozenset({"MUST", "MUST NOT"})
SHOULD_LEVELS = frozenset({"SHOULD", "SHOULD NOT"})


def worst(verdicts) -> Verdict:
    present = set(verdicts)
    for v in ROLLUP_ORDER:
        if v in present:
            return v
    return Verdict.UNTESTED


def broken_verdict(level: str) -> Verdict:
    """What breaking a clause of this level means: FAIL for MUST, WARN for SHOULD."""
    return Verdict.FAIL if level in MUST_LEVELS else Verdict.WARN


@dataclass
class Judgment:
    """One clause judged once: the heart of the evidence a reviewer reads."""

    clause: str
    verdict: Verdict
    what: str = ""  # what was looked at, e.g. "MagicValue register (0x000)"
    observed: Any = None
    expected: Any = None
    detail: str = ""  # how it was observed: register accesses, probe step
    level: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        return d

    @classmethod
    def from_json(cls, d: dict) -> Judgment:
        return cls(**{**d, "verdict": Verdict(d["verdict"])})


@dataclass
class CheckOutcome:
    """One check run against one device on one transport."""

    nodeid: str
    device: str
    transport: str
    clauses: list[str]
    verdict: Verdict
    judgments: list[Judgment] = field(default_factory=list)
    message: str = ""  # failure/error text (expected vs observed, or harness error)
    duration: float = 0.0
    attempt: int = 1
    artifacts: list[str] = field(default_factory=list)  # paths relative to the output dir
    reproducer: str = ""
    qemu_command: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        d["judgments"] = [j.to_json() for j in self.judgments]
        return d

    @classmethod
    def from_json(cls, d: dict) -> CheckOutcome:
        return cls(**{**d, "verdict": Verdict(d["verdict"]),
                      "judgments": [Judgment.from_json(j) for j in d.get("judgments", [])]})


@dataclass
class ClauseResult:
    """One record per clause × device × transport (the ``results`` list of results.json)."""

    clause: str
    level: str
    verdict: Verdict
    device: str
    transport: str
    checks: list[str] = field(default_factory=list)
    evidence: dict = field(default_factory=dict)
    artifacts: list[str] = field(default_factory=list)
    waiver: dict | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["verdict"] = self.verdict.value
        if self.waiver is None:
            del d["waiver"]
        return d

    @classmethod
    def from_json(cls, d: dict) -> ClauseResult:
        return cls(**{**d, "verdict": Verdict(d["verdict"])})


@dataclass
class RunResults:
    environment: dict = field(default_factory=dict)
    results: list[ClauseResult] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict:
        return {
            "schema_version": self.schema_version,
            "environment": self.environment,
            "results": [r.to_json() for r in self.results],
            "checks": [c.to_json() for c in self.checks],
        }

    @classmethod
    def from_json(cls, d: dict) -> RunResults:
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"results.json schema_version {version!r} is not {SCHEMA_VERSION}")
        return cls(
            environment=d.get("environment", {}),
            results=[ClauseResult.from_json(r) for r in d.get("results", [])],
            checks=[CheckOutcome.from_json(c) for c in d.get("checks", [])],
        )

    def write(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1, default=str) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, path: Path) -> RunResults:
        return cls.from_json(json.loads(Path(path).read_text()))


def rollup(outcomes: list[CheckOutcome], levels: dict[str, str]) -> list[ClauseResult]:
    """Fold check outcomes into one record per clause × device × transport.

    ``levels`` maps clause id to its level (from the catalog).  A check that ended
    without judging a clause it names (it errored, or was NA) lends that outcome to
    every clause it names.
    """
    groups: dict[tuple[str, str, str], list[tuple[CheckOutcome, Verdict, Judgment | None]]] = {}
    for o in outcomes:
        judged = {j.clause for j in o.judgments}
        for j in o.judgments:
            groups.setdefault((j.clause, o.device, o.transport), []).append((o, j.verdict, j))
        for clause in o.clauses:
            if clause not in judged:
                v = o.verdict if o.verdict in (Verdict.ERROR, Verdict.NA) else Verdict.UNTESTED
                groups.setdefault((clause, o.device, o.transport), []).append((o, v, None))
    records = []
    for (clause, device, transport), entries in sorted(groups.items()):
        verdict = worst(entry[1] for entry in entries)
        evidence: dict[str, Any] = {"judgments": [], "messages": []}
        checks: list[str] = []
        artifacts: list[str] = []
        for o, entry_verdict, judgment in entries:
            if o.nodeid not in checks:
                checks.append(o.nodeid)
            if judgment is not None:
                evidence["judgments"].append({"check": o.nodeid, **judgment.to_json()})
            elif o.message:
                evidence["messages"].append({"check": o.nodeid,
                                             "verdict": entry_verdict.value,
                                             "message": o.message})
            if entry_verdict in (Verdict.FAIL, Verdict.WARN, Verdict.ERROR):
                if o.reproducer:
                    evidence.setdefault("reproducers", [])
                    if o.reproducer not in evidence["reproducers"]:
                        evidence["reproducers"].append(o.reproducer)
                for a in o.artifacts:
                    if a not in artifacts:
                        artifacts.append(a)
        records.append(ClauseResult(clause=clause, level=levels.get(clause, ""),
                                    verdict=verdict, device=device, transport=transport,
                                    checks=checks, evidence=evidence, artifacts=artifacts))
    return records
