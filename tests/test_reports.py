"""Reports from a RunResults built in code: JUnit, HTML, Markdown, compare, exit codes."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from html.parser import HTMLParser

import pytest

from conformance.errors import ConfigError
from conformance.reports import (
    OUTPUT_FILES,
    compare,
    exit_code,
    exit_code_for_run,
    read_results,
    render_text,
    summary_table,
    write_all,
    write_html,
    write_junit,
    write_markdown,
)
from conformance.reports.html import render_html
from conformance.reports.junit import classname, render_junit
from conformance.reports.markdown import code, fenced, render_markdown
from conformance.results import CheckOutcome, ClauseResult, Judgment, RunResults, Verdict, rollup
from conformance.waivers import apply_waivers, parse_waivers

TODAY = dt.date(2025, 6, 1)

MAGIC = "transport/mmio/mmio-device-register-layout/1"
VERSION = "transport/mmio/mmio-device-register-layout/3"
FEATURES = "general/feature-bits/2"
STATUS_SHOULD = "basic/device-status-field/4"
RESET = "basic/device-reset/1"
NOT_YET = "basic/device-configuration-space/7"
UNCATALOGUED = "proposal/made-up/thing/1"

LEVELS = {MAGIC: "MUST", VERSION: "MUST", FEATURES: "MUST", STATUS_SHOULD: "SHOULD",
          RESET: "MUST", NOT_YET: "MUST", UNCATALOGUED: "MAY"}


@dataclass
class Entry:
    id: str
    level: str
    section: str
    section_number: str
    area: str
    paraphrase: str
    actor: str = "device"
    testable: str = "yes"


class StandInCatalog:
    """Shaped like conformance.catalog.Catalog, as far as reports use it: ``get`` (raising
    ConfigError for unknown ids), ``entries`` for coverage, ``in`` for waiver ids."""

    def __init__(self, entries):
        self.entries = tuple(entries)
        self._index = {e.id: e for e in entries}

    def get(self, clause_id):
        try:
            return self._index[clause_id]
        except KeyError:
            raise ConfigError(f"unknown clause id {clause_id!r}") from None

    def __contains__(self, clause_id):
        return clause_id in self._index


CATALOG = StandInCatalog([
    Entry(MAGIC, "MUST", "devicenormative:Virtio Transport Options / Virtio Over MMIO / "
          "MMIO Device Register Layout", "4.2.2", "transport/mmio",
          "The magic register reads as the little-endian string 'virt'."),
    Entry(VERSION, "MUST", "devicenormative:Virtio Transport Options / Virtio Over MMIO / "
          "MMIO Device Register Layout", "4.2.2", "transport/mmio",
          "A modern device reports version 2 in the version register."),
    Entry("transport/mmio/mmio-device-register-layout/5", "MUST", "devicenormative:Virtio "
          "Transport Options / Virtio Over MMIO / MMIO Device Register Layout", "4.2.2",
          "transport/mmio", "Something no check looks at yet."),
    Entry(FEATURES, "MUST", "devicenormative:Basic Facilities of a Virtio Device / Feature Bits",
          "2.2", "general", "Offered feature bits must not change while the driver negotiates."),
    Entry(STATUS_SHOULD, "SHOULD", "devicenormative:Basic Facilities of a Virtio Device / "
          "Device Status Field", "2.1", "basic/status",
          "The device should set NEEDS_RESET when it hits an error it cannot recover from."),
    Entry(RESET, "MUST", "devicenormative:Basic Facilities of a Virtio Device / Device Reset",
          "2.4", "basic/reset", "After reset, device status reads 0."),
    Entry(NOT_YET, "MUST", "devicenormative:Basic Facilities of a Virtio Device / Device "
          "Configuration Space", "2.5", "basic/config", "Config generation changes on update."),
    Entry("transport/mmio/mmio-device-register-layout/6", "MUST", "drivernormative:Virtio "
          "Transport Options / Virtio Over MMIO / MMIO Device Register Layout", "4.2.2",
          "transport/mmio", "A driver requirement: not judged against a device.", "driver",
          "no"),
    Entry("device/net/x/1", "MUST", "devicenormative:Device Types / Network Device", "5.1",
          "device/net", "Belongs to another device type."),
])

WAIVERS_TOML = f"""
[[waiver]]
clause = "{FEATURES}"
device = "virtio-blk"
transport = "pci*"
reason = "QEMU bug 1234, fixed in 8.0"
expires = 2025-12-31

[[waiver]]
clause = "{VERSION}"
reason = "old waiver nobody renewed"
expires = 2025-01-31
"""


def outcome(nodeid, device, transport, clauses, verdict, judgments=(), **kw) -> CheckOutcome:
    return CheckOutcome(nodeid=nodeid, device=device, transport=transport, clauses=list(clauses),
                        verdict=verdict, judgments=list(judgments), **kw)


def sample_outcomes() -> list[CheckOutcome]:
    mmio_regs = "conformance/checks/transport/mmio/test_registers.py"
    return [
        outcome(f"{mmio_regs}::test_magic", "virtio-blk", "mmio", [MAGIC], Verdict.PASS,
                [Judgment(MAGIC, Verdict.PASS, "MagicValue (0x000)", 0x74726976, 0x74726976,
                          level="MUST")], duration=0.12),
        outcome(f"{mmio_regs}::test_version", "virtio-blk", "mmio", [VERSION], Verdict.FAIL,
                [Judgment(VERSION, Verdict.FAIL, "Version (0x004)", 1, 2,
                          detail="read32(0xfeb00e04) -> 0x00000001", level="MUST")],
                message=f"[{VERSION}] Version (0x004): observed 1, expected 2",
                reproducer=f"virtio-conformance run --profile virtio-blk --transport mmio "
                           f"--clause {VERSION}",
                qemu_command="qemu-system-x86_64 -M microvm -device virtio-blk-device,drive=d0",
                artifacts=["artifacts/virtio-blk/mmio/serial.log",
                           "artifacts/virtio-blk/mmio/qmp.jsonl"], duration=0.3),
        outcome(f"{mmio_regs}::test_version", "virtio-blk", "pci", [VERSION], Verdict.NA,
                message="virtio-mmio clause; the device is on pci"),
        outcome("conformance/checks/general/test_features.py::test_features_stable",
                "virtio-blk", "pci", [FEATURES, RESET], Verdict.FAIL,
                [Judgment(FEATURES, Verdict.FAIL, "device_feature bits 0-31 re-read", 0x30000000,
                          0x31000000, detail="select 0; read 0x31000000; read 0x30000000",
                          level="MUST"),
                 Judgment(RESET, Verdict.PASS, "device_status after reset", 0, 0, level="MUST")],
                reproducer="virtio-conformance run --profile virtio-blk --transport pci "
                           f"--clause {FEATURES}"),
        outcome("conformance/checks/basic/test_status.py::test_needs_reset", "virtio-net", "pci",
                [STATUS_SHOULD], Verdict.WARN,
                [Judgment(STATUS_SHOULD, Verdict.WARN, "NEEDS_RESET after <bad> queue", "none|zero",
                          "NEEDS_RESET (0x40) set", level="SHOULD")]),
        outcome("conformance/checks/basic/test_reset.py::test_reset", "virtio-net", "mmio",
                [RESET], Verdict.ERROR, message="SSH did not come up within 60 s\nserial: ...",
                attempt=2, artifacts=["artifacts/virtio-net/mmio/serial.log"],
                reproducer="virtio-conformance run --profile virtio-net --transport mmio "
                           f"--clause {RESET}"),
        outcome("conformance/checks/proposal/test_made_up.py::test_thing", "virtio-net", "pci",
                [UNCATALOGUED], Verdict.PASS,
                [Judgment(UNCATALOGUED, Verdict.PASS, "a <b>bold</b> claim", "x|y", "x|y",
                          level="MAY")]),
    ]


def sample_run(today=TODAY) -> RunResults:
    outcomes = sample_outcomes()
    records = rollup(outcomes, LEVELS)
    records.append(ClauseResult(clause=NOT_YET, level="MUST", verdict=Verdict.UNTESTED,
                                device="virtio-blk", transport="mmio"))
    env = {"spec_revision": "virtio-v1.4-cs01", "qemu_binary": "/usr/bin/qemu-system-x86_64",
           "qemu_version": "7.2.22", "accelerator": "tcg",
           "accelerator_fallback": "KVM smoke boot failed (emulation failure); using TCG",
           "image_digest": "sha256:0123abcd", "host": "ci-runner-7",
           "started": "2025-06-01T02:00:00+00:00", "finished": "2025-06-01T02:07:10+00:00",
           "run_id": "20250601-020000"}
    run = RunResults(environment=env, results=records, checks=outcomes)
    return apply_waivers(run, parse_waivers(WAIVERS_TOML, "ci/waivers.toml"), today)


def record(run, clause, device, transport) -> ClauseResult:
    return next(r for r in run.results
                if (r.clause, r.device, r.transport) == (clause, device, transport))


# --- the sample itself ------------------------------------------------------------------


def test_sample_has_every_verdict_and_a_waiver():
    run = sample_run()
    assert {r.verdict for r in run.results} == set(Verdict)
    assert record(run, FEATURES, "virtio-blk", "pci").waiver["reason"].startswith("QEMU bug")
    assert record(run, VERSION, "virtio-blk", "mmio").waiver is None  # its waiver expired


# --- JUnit ------------------------------------------------------------------------------


def junit_cases(tmp_path):
    path = write_junit(sample_run(), tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    return root, cases


def props(case) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in case.iter("property"):
        out.setdefault(p.get("name"), []).append(p.get("value"))
    return out


def test_junit_one_testcase_per_check_device_transport(tmp_path):
    root, cases = junit_cases(tmp_path)
    assert root.tag == "testsuites"
    assert len(cases) == len(sample_outcomes())
    assert "test_version [virtio-blk@mmio]" in cases
    assert cases["test_version [virtio-blk@mmio]"].get("classname") == \
        "transport.mmio.test_registers"
    suites = [s.get("name") for s in root.iter("testsuite")]
    assert suites == ["virtio-blk@mmio", "virtio-blk@pci", "virtio-net@mmio", "virtio-net@pci"]
    assert root.get("tests") == str(len(cases))


def test_junit_properties_carry_the_environment(tmp_path):
    _, cases = junit_cases(tmp_path)
    p = props(cases["test_reset [virtio-net@mmio]"])
    assert p["clauses"] == [RESET]
    assert p["spec_revision"] == ["virtio-v1.4-cs01"]
    assert p["profile"] == ["virtio-net"]
    assert p["transport"] == ["mmio"]
    assert p["qemu_version"] == ["7.2.22"]
    assert p["accelerator"] == ["tcg"]
    assert p["image_digest"] == ["sha256:0123abcd"]
    assert p["attempt"] == ["2"]


def test_junit_failure_has_expected_vs_observed_and_clause(tmp_path):
    _, cases = junit_cases(tmp_path)
    failure = cases["test_version [virtio-blk@mmio]"].find("failure")
    assert failure is not None
    assert VERSION in failure.get("message")
    assert "observed 1, expected 2" in failure.get("message")
    assert "read32(0xfeb00e04)" in failure.text
    assert "reproduce: virtio-conformance run --profile virtio-blk" in failure.text
    assert "artifacts/virtio-blk/mmio/serial.log" in failure.text


def test_junit_waived_failure_is_skipped_not_hidden(tmp_path):
    _, cases = junit_cases(tmp_path)
    case = cases["test_features_stable [virtio-blk@pci]"]
    assert case.find("failure") is None
    skipped = case.find("skipped")
    assert skipped.get("message").startswith("waived FAIL")
    assert FEATURES in skipped.get("message")
    assert "0x30000000" in skipped.text
    assert any("QEMU bug 1234" in v for v in props(case)["waiver"])


def test_junit_warn_error_na(tmp_path):
    _, cases = junit_cases(tmp_path)
    warn = cases["test_needs_reset [virtio-net@pci]"]
    assert warn.find("failure") is None and warn.find("skipped") is None
    assert "NEEDS_RESET" in warn.find("system-out").text
    assert "warning" in props(warn)
    error = cases["test_reset [virtio-net@mmio]"].find("error")
    assert error.get("message") == "SSH did not come up within 60 s"
    na = cases["test_version [virtio-blk@pci]"].find("skipped")
    assert na.get("message") == "NA: virtio-mmio clause; the device is on pci"
    passing = cases["test_magic [virtio-blk@mmio]"]
    assert [c.tag for c in passing] == ["properties"]


def test_junit_survives_control_characters():
    run = sample_run()
    run.checks[1].message = "serial said \x00\x07 then died"
    root = ET.fromstring(render_junit(run).encode())
    assert root.find(".//failure") is not None


def test_classname_from_nodeid():
    assert classname("conformance/checks/transport/pci/test_caps.py::TestCommon::test_x[a]") == \
        "transport.pci.test_caps.TestCommon"
    assert classname("checks/general/test_init.py::test_y") == "general.test_init"
    assert classname("weird") == "weird"


# --- HTML ---------------------------------------------------------------------------------


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.tags: set[str] = set()
        self.srcs: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if "id" in a:
            self.ids.add(a["id"])
        if "href" in a:
            self.hrefs.append(a["href"])
        if "src" in a:
            self.srcs.append(a["src"])


def parsed_html(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


def test_html_is_self_contained_and_every_anchor_resolves():
    html = render_html(sample_run(), CATALOG)
    p = parsed_html(html)
    assert "script" not in p.tags and "link" not in p.tags and "img" not in p.tags
    assert not p.srcs
    assert not re.search(r"https?://", html)
    for href in p.hrefs:
        if href.startswith("#"):
            assert href[1:] in p.ids, href
        else:
            assert href.startswith("artifacts/"), href


def test_html_environment_and_fallback():
    html = render_html(sample_run(), CATALOG)
    for text in ("virtio-v1.4-cs01", "7.2.22", "sha256:0123abcd", "ci-runner-7",
                 "KVM smoke boot failed", "2025-06-01T02:07:10+00:00"):
        assert text in html
    assert "gate: FAIL (exit 1)" in html


def test_html_failure_evidence_and_two_click_path():
    html = render_html(sample_run(), CATALOG)
    p = parsed_html(html)
    # click 1: the FAIL count in virtio-blk's summary leads to its list of failures...
    summary = html.split('id="dev-virtio-blk-summary"', 1)[1].split("</div>", 1)[0]
    fail_link = re.search(r'href="#([^"]+)" data-verdict="FAIL"', summary).group(1)
    assert fail_link in p.ids
    listing = html.split(f'id="{fail_link}"', 1)[1].split("</div>", 1)[0]
    # click 2: ...whose entries lead to evidence blocks with observed vs expected.
    targets = re.findall(r'href="#(ev-[^"]+)"', listing)
    assert len(targets) == 2
    target = next(t for t in targets if t.endswith("register-layout-3"))
    block = html.split(f'id="{target}"', 1)[1].split("</article>", 1)[0]
    assert VERSION in block
    assert "read32(0xfeb00e04) -&gt; 0x00000001" in block
    assert "MMIO Device Register Layout" in block
    assert "version 2 in the version register" in block  # the paraphrase
    assert "--clause " + VERSION in block
    assert "qemu-system-x86_64 -M microvm" in block
    assert 'href="artifacts/virtio-blk/mmio/serial.log"' in block


def test_html_waived_failure_shows_badge_and_stays_fail():
    html = render_html(sample_run(), CATALOG)
    anchor = "ev-virtio-blk-pci-general-feature-bits-2"
    block = html.split(f'id="{anchor}"', 1)[1].split("</article>", 1)[0]
    assert ">FAIL<" in block
    assert 'class="waiver"' in block and "QEMU bug 1234" in block and "2025-12-31" in block
    # The expired waiver is listed, not applied.
    assert "old waiver nobody renewed" in html.split('id="waivers"', 1)[1]


def test_html_groups_by_chapter_and_shows_coverage():
    html = render_html(sample_run(), CATALOG)
    blk = html.split('id="dev-virtio-blk"', 1)[1].split('id="dev-virtio-net"', 1)[0]
    # Chapters in spec order: 2.x basic facilities before 4.2.2 MMIO.
    assert blk.index("2.2 Feature Bits") < blk.index("4.2.2 MMIO Device Register Layout")
    assert "Catalog coverage" in blk
    assert "device/net" not in blk  # another device type's chapter is not this one's coverage
    coverage = blk.split('class="coverage"', 1)[1].split("</table>", 1)[0]
    assert re.search(r"<td>transport/mmio</td><td class=\"num\">3</td><td class=\"num\">2</td>",
                     coverage)


def test_html_escapes_values_and_tolerates_unknown_clauses():
    html = render_html(sample_run(), CATALOG)
    assert "<bad>" not in html and "after &lt;bad&gt; queue" in html
    assert UNCATALOGUED in html


def test_html_without_catalog_still_groups_by_id():
    html = render_html(sample_run())
    assert "transport/mmio" in html and "mmio-device-register-layout" in html
    assert "coverage is not computed" in html


# --- Markdown -------------------------------------------------------------------------------


def test_markdown_has_summary_failures_and_evidence():
    md = render_markdown(sample_run(), CATALOG)
    assert "**gate: FAIL (exit 1)" in md
    assert "### Failures (MUST broken): 2" in md
    assert "(#ev-virtio-blk-mmio-transport-mmio-mmio-device-register-layout-3)" in md
    assert '<a id="ev-virtio-blk-mmio-transport-mmio-mmio-device-register-layout-3"></a>' in md
    assert "read32(0xfeb00e04) -> 0x00000001" in md
    assert "waived until 2025-12-31" in md
    assert "[artifacts/virtio-blk/mmio/serial.log](artifacts/virtio-blk/mmio/serial.log)" in md
    assert "SSH did not come up within 60 s" in md
    # A pipe in a value must not split its table row.
    row = next(line for line in md.splitlines()
               if line.startswith("| WARN") and "after \\<bad\\> queue" in line)
    assert row.count(" | ") == 4 and "`none\\|zero`" in row


def test_markdown_escaping_helpers():
    assert code("a`b") == "``a`b``"
    assert code("x|y") == "`x\\|y`"
    assert fenced("```\ninner\n```").startswith("````\n")


# --- gate -----------------------------------------------------------------------------------


def test_exit_codes():
    run = sample_run()
    assert exit_code_for_run(run) == 1  # an unwaived MUST failed
    # The unwaived failure fixed: harness errors are left.
    fixed = copy.deepcopy(run)
    record(fixed, VERSION, "virtio-blk", "mmio").verdict = Verdict.PASS
    assert exit_code_for_run(fixed) == 3
    # The error gone too: the waived FAIL and the WARN do not fail a normal gate...
    clean = copy.deepcopy(fixed)
    record(clean, RESET, "virtio-net", "mmio").verdict = Verdict.PASS
    assert exit_code_for_run(clean) == 0
    # ...but --strict makes the unwaived WARN fail it.
    assert exit_code_for_run(clean, strict=True) == 1
    record(clean, STATUS_SHOULD, "virtio-net", "pci").waiver = {"reason": "r",
                                                               "expires": "2099-01-01"}
    assert exit_code_for_run(clean, strict=True) == 0


def test_error_without_clauses_counts():
    run = RunResults(checks=[outcome("x.py::t", "d", "pci", [], Verdict.ERROR, message="boom")])
    assert exit_code_for_run(run) == 3
    assert "boom" in render_html(run)


def test_summary_table():
    table = summary_table(sample_run())
    lines = table.splitlines()
    assert lines[0].split() == ["device", "transport", "FAIL", "WARN", "ERROR", "PASS", "NA",
                                "UNTESTED", "waived"]
    blk_pci = next(line for line in lines if line.startswith("virtio-blk") and " pci " in line)
    assert blk_pci.split() == ["virtio-blk", "pci", "1", "0", "0", "1", "1", "0", "1"]
    assert lines[-1].startswith("gate: FAIL (exit 1)")


# --- write_all and re-rendering -------------------------------------------------------------


def test_write_all_and_rerender_from_results_json(tmp_path):
    run = sample_run()
    paths = write_all(run, tmp_path / "out", CATALOG)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(OUTPUT_FILES)
    assert paths["report.html"].read_text().startswith("<!DOCTYPE html>")
    again = RunResults.read(paths["results.json"])
    assert again.to_json() == json.loads(json.dumps(run.to_json(), default=str))
    # `report DIR` re-renders the same bytes from results.json alone.
    write_html(again, tmp_path / "again.html", CATALOG)
    assert (tmp_path / "again.html").read_text() == paths["report.html"].read_text()
    write_markdown(again, tmp_path / "again.md", CATALOG)
    assert (tmp_path / "again.md").read_text() == paths["report.md"].read_text()
    assert read_results(tmp_path / "out").to_json() == again.to_json()
    assert read_results(paths["results.json"]).to_json() == again.to_json()


def test_read_results_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read"):
        read_results(tmp_path)
    (tmp_path / "results.json").write_text('{"schema_version": 99}')
    with pytest.raises(ConfigError, match="schema_version 99"):
        read_results(tmp_path)


# --- compare --------------------------------------------------------------------------------


def planted_regression() -> tuple[RunResults, RunResults]:
    old = sample_run()
    new = copy.deepcopy(old)
    new.environment["run_id"] = "20250602-020000"
    new.environment["qemu_version"] = "8.0.0"
    magic = record(new, MAGIC, "virtio-blk", "mmio")
    magic.verdict = Verdict.FAIL  # the planted regression
    magic.evidence["judgments"][0].update(verdict="FAIL", observed=0)
    record(new, VERSION, "virtio-blk", "mmio").verdict = Verdict.PASS
    record(new, NOT_YET, "virtio-blk", "mmio").verdict = Verdict.PASS
    record(new, RESET, "virtio-net", "mmio").verdict = Verdict.PASS  # ERROR -> PASS
    warn = record(new, STATUS_SHOULD, "virtio-net", "pci")
    warn.evidence["judgments"][0]["observed"] = "NEEDS_RESET (0x40) late"
    new.results = [r for r in new.results if r.clause != UNCATALOGUED]
    return old, new


def test_compare_finds_planted_regression():
    old, new = planted_regression()
    c = compare(old, new)
    assert [ch.key for ch in c.newly_failing] == [(MAGIC, "virtio-blk", "mmio")]
    assert c.newly_failing[0].observed[0].old == "0x74726976 (1953655158)"
    assert c.newly_failing[0].observed[0].new == "0"
    assert {ch.clause for ch in c.newly_passing} == {VERSION, RESET}
    assert [ch.clause for ch in c.newly_covered] == [NOT_YET]
    assert [ch.clause for ch in c.no_longer_covered] == [UNCATALOGUED]
    assert [ch.clause for ch in c.evidence_changed] == [STATUS_SHOULD]
    assert exit_code(c) == 1
    text = render_text(c)
    assert f"{MAGIC} [MUST] on virtio-blk@mmio: PASS -> FAIL" in text
    assert "compare: 1 clause record newly FAIL (exit 1)" in text
    assert "qemu_version changed: 7.2.22 -> 8.0.0" in text
    data = json.loads(json.dumps(c.to_json()))
    assert data["counts"]["newly_failing"] == 1
    assert data["newly_failing"][0]["clause"] == MAGIC


def test_compare_identical_runs_and_waived_regressions():
    old, _ = planted_regression()
    same = compare(old, copy.deepcopy(old))
    assert exit_code(same) == 0
    assert same.unchanged == len(old.results)
    # A clause that starts failing but is already waived in the new run: listed, not gating.
    new = copy.deepcopy(old)
    magic = record(new, MAGIC, "virtio-blk", "mmio")
    magic.verdict = Verdict.FAIL
    magic.waiver = {"reason": "known", "expires": "2099-01-01", "source": "w.toml#1"}
    c = compare(old, new)
    assert len(c.newly_failing) == 1 and exit_code(c) == 0
    # A record absent before and failing now is a new failure too (a new check found it).
    old.results = [r for r in old.results if r.clause != VERSION]
    assert [ch.clause for ch in compare(old, sample_run()).newly_failing] == [VERSION]


@pytest.mark.parametrize("writer", [write_html, write_markdown])
def test_reports_render_an_empty_run(tmp_path, writer):
    path = writer(RunResults(), tmp_path / "r")
    assert "gate: PASS (exit 0)" in path.read_text()
