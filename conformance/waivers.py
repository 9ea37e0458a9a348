"""Waivers: known failures a team has decided to live with, for a while.

A waived failure stays ``FAIL`` (or ``WARN``) and carries a ``waiver`` object, so every
report still shows it; it just no longer fails the gate.  A waiver that has expired
stops applying, and the reports list it so someone renews or removes it.

The file is TOML, one ``[[waiver]]`` table per entry::

    [[waiver]]
    clause = "transport/mmio/mmio-device-register-layout/3"   # exact catalog id
    device = "virtio-blk*"        # optional glob over profile names (default: all)
    transport = "mmio*"           # optional glob over transport variants (default: all)
    reason = "QEMU 7.2 reports ... ; fixed upstream in commit ..."
    expires = 2025-12-31          # a TOML date; the waiver applies through this day

Unknown keys are errors (a typo must not silently widen or drop a waiver).
"""

from __future__ import annotations

import copy
import datetime as dt
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from .errors import ConfigError
from .results import RunResults, Verdict

WAIVABLE = (Verdict.FAIL, Verdict.WARN)
REQUIRED = ("clause", "reason", "expires")
OPTIONAL = ("device", "transport")


@dataclass(frozen=True)
class Waiver:
    clause: str
    reason: str
    expires: dt.date
    device: str = "*"
    transport: str = "*"
    source: str = ""  # "<file>#<entry number>", so a reader finds the entry

    def matches(self, clause: str, device: str, transport: str) -> bool:
        return (clause == self.clause and fnmatchcase(device, self.device)
                and fnmatchcase(transport, self.transport))

    def expired(self, today: dt.date) -> bool:
        return today > self.expires

    def to_json(self) -> dict:
        """The ``waiver`` object a waived record carries in results.json."""
        return {"reason": self.reason, "expires": self.expires.isoformat(), "source": self.source}

    def describe(self) -> dict:
        """The whole entry, for the lists of expired and unused waivers."""
        return {"clause": self.clause, "device": self.device, "transport": self.transport,
                **self.to_json()}


def _date(value, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(f"{where}: 'expires' must be a date like 2025-12-31, not {value!r}")


def parse_waivers(text: str, source: str = "<waivers>",
                  known_clauses=None) -> list[Waiver]:
    """Waivers from TOML text; ``source`` names the file in errors and waiver objects.

    ``known_clauses`` (a container of catalog ids), when given, makes an unknown clause
    id an error: a waiver for a misspelt id would never apply.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: not valid TOML: {e}") from None
    unknown_top = set(data) - {"waiver"}
    if unknown_top:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown_top)}; "
                          "write each waiver as a [[waiver]] table")
    entries = data.get("waiver", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: 'waiver' must be an array of tables ([[waiver]])")
    waivers = []
    for number, entry in enumerate(entries, start=1):
        label = f"{source}: waiver #{number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{label}: must be a table with {', '.join(REQUIRED)}")
        if isinstance(entry.get("clause"), str):
            label += f" (clause {entry['clause']!r})"
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ConfigError(f"{label}: missing {', '.join(missing)}")
        unknown = set(entry) - set(REQUIRED) - set(OPTIONAL)
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {sorted(unknown)}; "
                              f"allowed: {', '.join(REQUIRED + OPTIONAL)}")
        for key in ("clause", "reason", *OPTIONAL):
            if key in entry and (not isinstance(entry[key], str) or not entry[key].strip()):
                raise ConfigError(f"{label}: {key!r} must be a non-empty string")
        clause = entry["clause"].strip()
        if known_clauses is not None and clause not in known_clauses:
            raise ConfigError(f"{label}: no clause {clause!r} in the catalog "
                              "(see `virtio-conformance clauses`)")
        waivers.append(Waiver(clause=clause, reason=entry["reason"].strip(),
                              expires=_date(entry["expires"], label),
                              device=entry.get("device", "*").strip(),
                              transport=entry.get("transport", "*").strip(),
                              source=f"{source}#{number}"))
    return waivers


def load_waivers(path, known_clauses=None) -> list[Waiver]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"cannot read waivers file {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"waivers file {path} is not UTF-8 text") from None
    return parse_waivers(text, str(path), known_clauses)


def apply_waivers(results: RunResults, waivers: list[Waiver],
                  today: dt.date | None = None) -> RunResults:
    """A copy of ``results`` whose FAIL/WARN records matched by a live waiver carry it.

    The waivers given are the whole truth: waivers already on the records (from an
    earlier application) are replaced.  The first live waiver in file order wins.
    ``environment["waivers"]`` summarises what happened: how many records were waived,
    which waivers expired (with the records they would have covered) and which live
    ones matched nothing (candidates for removal).
    """
    today = today or dt.date.today()
    out = copy.deepcopy(results)
    live = [w for w in waivers if not w.expired(today)]
    expired = [w for w in waivers if w.expired(today)]
    used: set[int] = set()
    expired_matches: dict[int, list[dict]] = {i: [] for i in range(len(expired))}
    applied = 0
    for r in out.results:
        r.waiver = None
        if r.verdict not in WAIVABLE:
            continue
        for i, w in enumerate(live):
            if w.matches(r.clause, r.device, r.transport):
                r.waiver = w.to_json()
                used.add(i)
                applied += 1
                break
        for i, w in enumerate(expired):
            if w.matches(r.clause, r.device, r.transport):
                expired_matches[i].append({"device": r.device, "transport": r.transport,
                                           "verdict": r.verdict.value})
    sources = sorted({w.source.rsplit("#", 1)[0] for w in waivers})
    out.environment = dict(out.environment)
    out.environment["waivers"] = {
        "file": ", ".join(sources),
        "today": today.isoformat(),
        "applied": applied,
        "expired": [{**w.describe(), "matches": expired_matches[i]}
                    for i, w in enumerate(expired)],
        "unused": [w.describe() for i, w in enumerate(live) if i not in used],
    }
    return out
