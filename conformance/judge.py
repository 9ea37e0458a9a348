"""How a check records what it judged: one ``Judgment`` per clause looked at.

A check names its clauses with ``@pytest.mark.clause(...)`` and records each
comparison through the ``judge`` fixture::

    judge.equal("transport/pci/pci-device-discovery/1", observed=ids["VendorID"],
                expected=0x1AF4, what="PCI Vendor ID")

Judgments are soft: a check records every clause it can before the test ends, so one
broken register does not hide the verdict on the next.  A broken MUST fails the test
(FAIL); a broken SHOULD is a warning (WARN), never a failure.
"""

from __future__ import annotations

from typing import Any

from .results import Judgment, Verdict, broken_verdict


def _fmt(value: Any) -> Any:
    # Register values read better in hex; keep other values as they are.
    if isinstance(value, bool) or not isinstance(value, int):
        return value
    return f"0x{value:x}" if value > 9 else value


class Judge:
    def __init__(self, clauses: list[str], levels: dict[str, str],
                 not_applicable: dict[str, str] | None = None):
        self.clauses = list(clauses)
        self.levels = levels
        # clause -> why the catalog says it does not apply to this device and transport
        self.not_applicable = not_applicable or {}
        self.judgments: list[Judgment] = []

    def _level(self, clause: str) -> str:
        if clause not in self.clauses:
            raise ValueError(f"check judges {clause!r} but its clause marker does not name it "
                             f"(it names: {', '.join(self.clauses) or 'nothing'})")
        return self.levels.get(clause, "MUST")

    def check(self, clause: str, ok: bool, *, what: str, observed: Any = None,
              expected: Any = None, detail: str = "") -> bool:
        level = self._level(clause)
        if clause in self.not_applicable:
            # Applicability is the catalog's call, not the check's.
            self.judgments.append(Judgment(clause=clause, verdict=Verdict.NA,
                                           what=f"{what}: {self.not_applicable[clause]}",
                                           observed=_fmt(observed), level=level))
            return True
        verdict = Verdict.PASS if ok else broken_verdict(level)
        self.judgments.append(Judgment(clause=clause, verdict=verdict, what=what,
                                       observed=_fmt(observed), expected=_fmt(expected),
                                       detail=detail, level=level))
        return ok

    def equal(self, clause: str, observed: Any, expected: Any, *, what: str,
              detail: str = "") -> bool:
        return self.check(clause, observed == expected, what=what, observed=observed,
                          expected=expected, detail=detail)

    def na(self, clause: str, reason: str) -> None:
        level = self._level(clause)
        self.judgments.append(Judgment(clause=clause, verdict=Verdict.NA, what=reason,
                                       level=level))

    def broken(self, verdict: Verdict) -> list[Judgment]:
        return [j for j in self.judgments if j.verdict == verdict]

    def failure_text(self) -> str:
        lines = []
        for j in self.judgments:
            if j.verdict in (Verdict.FAIL, Verdict.WARN):
                lines.append(f"{j.verdict} {j.clause} [{j.level}] {j.what}: observed "
                             f"{j.observed!r}, expected {j.expected!r}"
                             + (f" ({j.detail})" if j.detail else ""))
        return "\n".join(lines)


class ClauseViolation(AssertionError):
    """Raised at the end of a check whose judgments broke a MUST."""
