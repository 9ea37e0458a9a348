"""What a reviewer sees, computed once from ``RunResults`` for both HTML and Markdown.

The templates only lay out what this module decides: which devices, which counts, how
clauses group into the spec's chapters, which records carry an evidence block and what
anchor leads to it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..results import CheckOutcome, ClauseResult, RunResults, Verdict
from .gate import DISPLAY_ORDER, exit_code_for_run, gate_sentence, transport_order

# Verdicts that get an evidence block: the ones a reviewer has to act on.
NEEDS_EVIDENCE = (Verdict.FAIL, Verdict.WARN, Verdict.ERROR)
# Levels in the order the spec weighs them; records without a level come last.
LEVEL_ORDER = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY", "")
# Without a catalog, chapters follow the spec's order: basic facilities, general
# initialisation, transports, device types, then proposals.
AREA_RANK = {"basic": 0, "general": 1, "transport": 2, "device": 3, "proposal": 4}

# Environment keys shown in the header block, in this order, with their labels.
ENVIRONMENT_LABELS = (
    ("spec_revision", "spec revision"),
    ("qemu_version", "QEMU version"),
    ("qemu_binary", "QEMU binary"),
    ("accelerator", "accelerator"),
    ("image_digest", "guest image digest"),
    ("host", "host"),
    ("started", "started"),
    ("finished", "finished"),
    ("run_id", "run id"),
)
# Where the machine room may say that KVM was wanted but TCG was used (and why).
FALLBACK_KEYS = ("accelerator_fallback", "accelerator_note", "accelerator_reason",
                 "kvm_fallback")


@dataclass
class ClauseInfo:
    """What the catalog says about a clause, or what its id alone tells."""

    id: str
    level: str = ""
    section: str = ""  # full spec label
    section_number: str = ""
    area: str = ""
    paraphrase: str = ""
    actor: str = ""
    catalogued: bool = False

    @property
    def section_path(self) -> str:
        """The label without its ``devicenormative:``-style kind prefix."""
        return self.section.split(":", 1)[-1].strip()

    @property
    def section_title(self) -> str:
        """The section's own name (last part of its label), with its number."""
        label = self.section.split(":", 1)[-1]
        name = label.rsplit(" / ", 1)[-1].strip()
        return " ".join(p for p in (self.section_number, name) if p)


def slug_parts(clause_id: str) -> tuple[str, str]:
    """Area and section slug from an id shaped ``area/.../section-slug/ordinal``."""
    parts = clause_id.split("/")
    if len(parts) >= 3:
        return "/".join(parts[:-2]), parts[-2]
    return (parts[0] if len(parts) > 1 else ""), ""


def clause_info(catalog, clause_id: str, level: str = "") -> ClauseInfo:
    area, section = slug_parts(clause_id)
    fallback = ClauseInfo(id=clause_id, level=level, area=area, section=section)
    if catalog is None:
        return fallback
    try:
        entry = catalog.get(clause_id)
    except Exception:  # noqa: BLE001 - the report must render whatever the catalog does
        return fallback
    if entry is None:
        return fallback
    return ClauseInfo(
        id=clause_id,
        level=level or str(getattr(entry, "level", "") or ""),
        section=str(getattr(entry, "section", "") or section),
        section_number=str(getattr(entry, "section_number", "") or ""),
        area=str(getattr(entry, "area", "") or area),
        paraphrase=str(getattr(entry, "paraphrase", "") or ""),
        actor=str(getattr(entry, "actor", "") or ""),
        catalogued=True,
    )


def natural_key(text: str) -> tuple:
    """Sort ``4.2.10`` after ``4.2.9`` and ``.../10`` after ``.../9``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p)
                 for p in re.split(r"(\d+)", text) if p)


def show(value: Any) -> str:
    """A value as a reviewer wants to read it: registers in hex with their decimal."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:#x} ({value})" if abs(value) >= 10 else str(value)
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def anchor(*parts: str) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "-", p).strip("-").lower() for p in parts if p)


@dataclass
class JudgmentLine:
    check: str
    verdict: str
    what: str
    observed: str
    expected: str
    detail: str


@dataclass
class EvidenceBlock:
    anchor: str
    record: ClauseResult
    info: ClauseInfo
    judgments: list[JudgmentLine]
    messages: list[dict]
    reproducers: list[str]
    qemu_commands: list[str]
    artifacts: list[str]
    retried: list[tuple[str, int]]  # (check, attempt) for outcomes that needed retries
    expired_waivers: list[dict] = field(default_factory=list)  # would apply, but expired

    @property
    def verdict(self) -> str:
        return self.record.verdict.value

    @property
    def headline(self) -> str:
        """One line for lists: the first non-passing judgment, else the first message."""
        for j in self.judgments:
            if j.verdict == self.verdict:
                what = f"{j.what}: " if j.what else ""
                return f"{what}observed {j.observed}, expected {j.expected}"
        for m in self.messages:
            return m.get("message", "").strip().splitlines()[0] if m.get("message") else ""
        return ""


@dataclass
class Cell:
    verdict: str
    anchor: str = ""
    waiver: dict | None = None


@dataclass
class Row:
    info: ClauseInfo
    cells: dict[str, Cell]  # transport -> cell

    @property
    def worst(self) -> str:
        for v in DISPLAY_ORDER:
            if any(c.verdict == v.value for c in self.cells.values()):
                return v.value
        return ""


@dataclass
class SectionGroup:
    title: str
    label: str
    rows: list[Row]


@dataclass
class AreaGroup:
    area: str
    anchor: str
    sections: list[SectionGroup]


@dataclass
class CoverageLine:
    area: str
    catalogued: int
    judged: int

    @property
    def percent(self) -> int:
        return round(100 * self.judged / self.catalogued) if self.catalogued else 0


@dataclass
class DeviceView:
    name: str
    anchor: str
    transports: list[str]
    counts: dict[str, int]
    waived: int
    level_counts: list[tuple[str, dict[str, int]]]
    transport_counts: list[tuple[str, dict[str, int]]]
    coverage: list[CoverageLine] | None
    areas: list[AreaGroup]
    findings: dict[str, list[EvidenceBlock]]  # verdict -> evidence blocks (FAIL/WARN/ERROR)

    def list_anchor(self, verdict: str) -> str:
        return anchor(self.anchor, verdict)

    @property
    def evidence(self) -> list[EvidenceBlock]:
        return [e for v in NEEDS_EVIDENCE for e in self.findings.get(v.value, [])]


@dataclass
class ReportView:
    environment: list[tuple[str, str]]
    extra_environment: list[tuple[str, str]]
    accelerator_fallback: str
    gate: str
    exit_code: int
    devices: list[DeviceView]
    verdicts: list[str]
    totals: dict[str, int]
    waivers: dict = field(default_factory=dict)
    catalog_given: bool = False
    clauseless_errors: list[CheckOutcome] = field(default_factory=list)


def _environment(env: dict) -> tuple[list[tuple[str, str]], list[tuple[str, str]], str]:
    shown = []
    for key, label in ENVIRONMENT_LABELS:
        if env.get(key) in (None, ""):
            continue
        value = show(env[key])
        if key == "accelerator" and env.get("accelerator_reason") and \
                not env.get("kvm_fell_back_to_tcg"):
            value = f"{value} ({env['accelerator_reason']})"  # why, when it was no fallback
        shown.append((label, value))
    fallback = ""
    if env.get("kvm_fell_back_to_tcg") is not False:
        for key in FALLBACK_KEYS:
            said = env.get(key)
            if said and (key != "accelerator_reason" or env.get("kvm_fell_back_to_tcg")):
                fallback = said if isinstance(said, str) else "KVM was not usable; TCG was used"
                break
    skip = ({k for k, _ in ENVIRONMENT_LABELS} | set(FALLBACK_KEYS)
            | {"waivers", "guests", "kvm_fell_back_to_tcg"})
    extra = [(k, show(v)) for k, v in sorted(env.items()) if k not in skip and v not in (None, "")]
    guests = env.get("guests") or []
    if guests:
        extra.append(("guests", "; ".join(_guest_line(g) for g in guests)))
    return shown, extra, fallback


def _guest_line(guest: dict) -> str:
    """One booted (or failed) guest in a few words: which, how long, where its logs are."""
    group = guest.get("group", "*")
    name = guest.get("variant", "?") + ("" if group in ("*", None) else f" ({group})")
    outcome = (f"ready in {guest['boot_seconds']} s" if "boot_seconds" in guest
               else f"did not boot: {guest.get('error', '?')}")
    devices = len(guest.get("devices", []))
    return f"{name} boot {guest.get('boot', 1)}: {outcome}, {devices} device(s), {guest.get('workdir', '')}"


def _expired_waivers(env: dict) -> dict[tuple[str, str, str], list[dict]]:
    """(clause, device, transport) -> the expired waivers that would have covered it."""
    out: dict[tuple[str, str, str], list[dict]] = {}
    for w in (env.get("waivers") or {}).get("expired", []):
        for m in w.get("matches", []):
            out.setdefault((w.get("clause", ""), m.get("device", ""), m.get("transport", "")),
                           []).append(w)
    return out


def _evidence_block(record: ClauseResult, info: ClauseInfo, anchor_id: str,
                    outcomes: dict[tuple[str, str, str], CheckOutcome],
                    expired: dict[tuple[str, str, str], list[dict]]) -> EvidenceBlock:
    ev = record.evidence or {}
    judgments = [JudgmentLine(check=j.get("check", ""), verdict=str(j.get("verdict", "")),
                              what=j.get("what", ""), observed=show(j.get("observed")),
                              expected=show(j.get("expected")), detail=j.get("detail", ""))
                 for j in ev.get("judgments", [])]
    # Failing judgments first: they are what the reviewer came for.
    rank = {v.value: i for i, v in enumerate(DISPLAY_ORDER)}
    judgments.sort(key=lambda j: rank.get(j.verdict, len(rank)))
    qemu_commands: list[str] = []
    retried: list[tuple[str, int]] = []
    for nodeid in record.checks:
        o = outcomes.get((nodeid, record.device, record.transport))
        if o is None:
            continue
        if o.qemu_command and o.verdict in NEEDS_EVIDENCE and o.qemu_command not in qemu_commands:
            qemu_commands.append(o.qemu_command)
        if o.attempt > 1:
            retried.append((nodeid, o.attempt))
    return EvidenceBlock(anchor=anchor_id, record=record, info=info, judgments=judgments,
                         messages=list(ev.get("messages", [])),
                         reproducers=list(ev.get("reproducers", [])),
                         qemu_commands=qemu_commands, artifacts=list(record.artifacts),
                         retried=retried,
                         expired_waivers=expired.get((record.clause, record.device,
                                                      record.transport), []))


def _catalog_entries(catalog) -> list | None:
    """Every catalog entry, if the catalog can list them (coverage needs the whole set)."""
    if catalog is None:
        return None
    for attr in ("entries", "all", "clauses"):
        source = getattr(catalog, attr, None)
        if source is None:
            continue
        items = source() if callable(source) else source
        if isinstance(items, dict):
            items = items.values()
        return [e for e in items if hasattr(e, "id")]
    try:
        return [e for e in iter(catalog) if hasattr(e, "id")]
    except TypeError:
        return None


def _coverage(entries: list | None, records: list[ClauseResult]) -> list[CoverageLine] | None:
    if entries is None:
        return None
    judged = {r.clause for r in records if r.verdict not in (Verdict.UNTESTED, Verdict.ERROR)}
    present = {r.clause for r in records}
    device_areas = {str(getattr(e, "area", "")) for e in entries if e.id in present}
    by_area: dict[str, list] = {}
    for e in entries:
        # Driver requirements and the like cannot be judged against a device at all.
        if getattr(e, "testable", "yes") == "no":
            continue
        area = str(getattr(e, "area", "") or slug_parts(e.id)[0])
        # Another device type's chapter says nothing about this device's coverage.
        if area.startswith("device/") and area not in device_areas:
            continue
        by_area.setdefault(area, []).append(e)
    lines = [CoverageLine(area=a, catalogued=len(es), judged=sum(1 for e in es if e.id in judged))
             for a, es in by_area.items()]
    lines.sort(key=lambda c: (AREA_RANK.get(c.area.split("/")[0], 9), natural_key(c.area)))
    total = CoverageLine(area="all", catalogued=sum(c.catalogued for c in lines),
                         judged=sum(c.judged for c in lines))
    return [*lines, total]


def _areas(device: str, records: list[ClauseResult], infos: dict[str, ClauseInfo],
           anchors: dict[tuple[str, str], str]) -> list[AreaGroup]:
    rows: dict[str, Row] = {}
    for r in records:
        row = rows.setdefault(r.clause, Row(info=infos[r.clause], cells={}))
        row.cells[r.transport] = Cell(verdict=r.verdict.value,
                                      anchor=anchors.get((r.clause, r.transport), ""),
                                      waiver=r.waiver)
    groups: dict[str, dict[str, list[Row]]] = {}
    labels: dict[tuple[str, str], str] = {}
    for row in rows.values():
        title = row.info.section_title or "(no section)"
        groups.setdefault(row.info.area or "(no area)", {}).setdefault(title, []).append(row)
        labels[(row.info.area or "(no area)", title)] = row.info.section

    def section_key(title_rows: tuple[str, list[Row]]) -> tuple:
        title, rs = title_rows
        number = rs[0].info.section_number
        return (0, natural_key(number)) if number else (1, natural_key(title))

    def area_key(item: tuple[str, dict[str, list[Row]]]) -> tuple:
        area, sections = item
        numbers = [rs[0].info.section_number for rs in sections.values() if rs[0].info.section_number]
        first = min((natural_key(n) for n in numbers), default=())
        return (0 if numbers else 1, first, AREA_RANK.get(area.split("/")[0], 9), natural_key(area))

    out = []
    for area, sections in sorted(groups.items(), key=area_key):
        section_groups = []
        for title, rs in sorted(sections.items(), key=section_key):
            rs.sort(key=lambda row: natural_key(row.info.id))
            section_groups.append(SectionGroup(title=title, label=labels[(area, title)], rows=rs))
        out.append(AreaGroup(area=area, anchor=anchor(device, "area", area),
                             sections=section_groups))
    return out


def build_view(results: RunResults, catalog=None, strict: bool = False) -> ReportView:
    env = results.environment or {}
    shown, extra, fallback = _environment(env)
    outcomes = {(c.nodeid, c.device, c.transport): c for c in results.checks}
    entries = _catalog_entries(catalog)
    expired = _expired_waivers(env)
    infos: dict[str, ClauseInfo] = {}
    for r in results.results:
        if r.clause not in infos:
            infos[r.clause] = clause_info(catalog, r.clause, r.level)
        elif not infos[r.clause].level and r.level:
            infos[r.clause].level = r.level

    by_device: dict[str, list[ClauseResult]] = {}
    for r in results.results:
        by_device.setdefault(r.device, []).append(r)
    # A device whose every check errored before naming a clause still deserves a section.
    for c in results.checks:
        by_device.setdefault(c.device, [])

    used_anchors: set[str] = set()
    devices = []
    for name in sorted(by_device):
        records = by_device[name]
        dev_anchor = anchor("dev", name)
        transports = transport_order({r.transport for r in records}
                                     | {c.transport for c in results.checks if c.device == name})
        anchors: dict[tuple[str, str], str] = {}
        findings: dict[str, list[EvidenceBlock]] = {v.value: [] for v in NEEDS_EVIDENCE}
        ordered = sorted(records, key=lambda r: (natural_key(infos[r.clause].section_number),
                                                 natural_key(r.clause),
                                                 transport_order(transports).index(r.transport)))
        for r in ordered:
            if r.verdict not in NEEDS_EVIDENCE:
                continue
            a = base = anchor("ev", name, r.transport, r.clause)
            n = 2
            while a in used_anchors:
                a, n = f"{base}-{n}", n + 1
            used_anchors.add(a)
            anchors[(r.clause, r.transport)] = a
            findings[r.verdict.value].append(
                _evidence_block(r, infos[r.clause], a, outcomes, expired))
        counts = Counter(r.verdict.value for r in records)
        level_counts = []
        for level in LEVEL_ORDER:
            level_records = [r for r in records if (r.level or infos[r.clause].level) == level]
            if level_records:
                level_counts.append((level or "(none)",
                                     dict(Counter(r.verdict.value for r in level_records))))
        transport_counts = [(t, dict(Counter(r.verdict.value for r in records if r.transport == t)))
                            for t in transports]
        devices.append(DeviceView(
            name=name, anchor=dev_anchor, transports=transports,
            counts={v.value: counts.get(v.value, 0) for v in DISPLAY_ORDER},
            waived=sum(1 for r in records if r.waiver),
            level_counts=level_counts, transport_counts=transport_counts,
            coverage=_coverage(entries, records),
            areas=_areas(name, records, infos, anchors), findings=findings))

    totals = Counter(r.verdict.value for r in results.results)
    return ReportView(
        environment=shown, extra_environment=extra, accelerator_fallback=fallback,
        gate=gate_sentence(results, strict), exit_code=exit_code_for_run(results, strict),
        devices=devices, verdicts=[v.value for v in DISPLAY_ORDER],
        totals={v.value: totals.get(v.value, 0) for v in DISPLAY_ORDER},
        waivers=env.get("waivers") or {}, catalog_given=catalog is not None,
        clauseless_errors=[c for c in results.checks
                           if c.verdict is Verdict.ERROR and not c.clauses])
