"""JUnit XML for CI: one testcase per check × device × transport.

Built with the junit-xml package.  That package has no per-testcase properties, so
they are added to its element tree before writing (the layout pytest's own
``record_property`` produces, which Jenkins and GitLab read).

Mapping:
- FAIL  -> <failure>, with expected vs observed of every failing judgment and its clause;
           if every failing clause is waived, <skipped> saying "waived FAIL" instead, so a
           waiver keeps CI green without hiding the finding.
- WARN  -> a passing testcase with the warning in <system-out> and a ``warning`` property
- ERROR -> <error> with the harness message
- NA    -> <skipped> with the reason
- UNTESTED (a check that judged none of its clauses) -> <skipped>
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from junit_xml import TestCase, TestSuite

from ..results import CheckOutcome, ClauseResult, Judgment, RunResults, Verdict
from .gate import transport_order
from .view import show

# results.environment key -> testcase property name (INTERFACES.md's list).
ENVIRONMENT_PROPERTIES = (
    ("spec_revision", "spec_revision"),
    ("qemu_version", "qemu_version"),
    ("accelerator", "accelerator"),
    ("image_digest", "image_digest"),
)


# Characters XML 1.0 cannot carry at all (serial logs and probe output may hold them).
ILLEGAL_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _clean(root: ET.Element) -> None:
    for element in root.iter():
        if element.text:
            element.text = ILLEGAL_XML.sub("\ufffd", element.text)
        for key, value in element.attrib.items():
            element.set(key, ILLEGAL_XML.sub("\ufffd", value))


def classname(nodeid: str) -> str:
    """``conformance/checks/transport/mmio/test_regs.py::TestX::test_y`` ->
    ``transport.mmio.test_regs.TestX``: the check module, which mirrors the spec chapter."""
    path, _, rest = nodeid.partition("::")
    module = path[:-3] if path.endswith(".py") else path
    parts = [p for p in module.split("/") if p]
    if "checks" in parts:
        parts = parts[parts.index("checks") + 1:]
    owners = rest.split("::")[:-1]
    return ".".join(parts + owners) or "checks"


def testcase_name(outcome: CheckOutcome) -> str:
    test = outcome.nodeid.rsplit("::", 1)[-1]
    target = f"[{outcome.device}@{outcome.transport}]"
    # The plugin's node ids already carry the target as pytest's parameter id.
    return test if test.endswith(target) else f"{test} {target}"


def describe(j: Judgment | dict) -> str:
    """One judgment as a line a CI log reader can act on."""
    d = j.to_json() if isinstance(j, Judgment) else j
    what = f" {d.get('what')}:" if d.get("what") else ""
    text = (f"[{d.get('clause')}]{what} observed {show(d.get('observed'))}, "
            f"expected {show(d.get('expected'))}")
    if d.get("detail"):
        text += "\n    " + str(d["detail"]).replace("\n", "\n    ")
    return text


def _waiver_for(records: dict[tuple[str, str, str], ClauseResult], o: CheckOutcome,
                clause: str) -> dict | None:
    r = records.get((clause, o.device, o.transport))
    return r.waiver if r is not None else None


def _footer(o: CheckOutcome) -> str:
    lines = []
    if o.reproducer:
        lines.append(f"reproduce: {o.reproducer}")
    if o.qemu_command:
        lines.append(f"qemu: {o.qemu_command}")
    if o.artifacts:
        lines.append("artifacts: " + ", ".join(o.artifacts))
    if o.attempt > 1:
        lines.append(f"attempt: {o.attempt}")
    return "\n".join(lines)


def _join(*parts: str) -> str:
    return "\n\n".join(p for p in parts if p)


def _testcase(o: CheckOutcome, records: dict, env: dict) -> tuple[TestCase, list[tuple[str, str]]]:
    case = TestCase(name=testcase_name(o), classname=classname(o.nodeid),
                    elapsed_sec=o.duration or None, file=o.nodeid.partition("::")[0] or None)
    props = [("clauses", " ".join(o.clauses)), ("profile", o.device),
             ("transport", o.transport)]
    props += [(name, str(env.get(key) or "")) for key, name in ENVIRONMENT_PROPERTIES]
    props.append(("attempt", str(o.attempt)))
    props.append(("nodeid", o.nodeid))

    if o.verdict is Verdict.FAIL:
        failing = [j for j in o.judgments if j.verdict is Verdict.FAIL]
        waivers = {j.clause: _waiver_for(records, o, j.clause) for j in failing}
        lines = []
        for j in failing:
            w = waivers[j.clause]
            note = f"  (waived until {w.get('expires')}: {w.get('reason')})" if w else ""
            lines.append(describe(j) + note)
        evidence = _join("\n".join(lines), o.message, _footer(o))
        first = failing[0] if failing else None
        summary = describe(first).splitlines()[0] if first else (o.message.splitlines() or ["FAIL"])[0]
        if len(failing) > 1:
            summary += f" (and {len(failing) - 1} more)"
        if failing and all(waivers.values()):
            for clause, w in waivers.items():
                assert w is not None
                props.append(("waiver", f"{clause}: {w.get('reason')} (expires {w.get('expires')})"))
            case.add_skipped_info(message=f"waived FAIL: {summary}", output=evidence)
        else:
            case.add_failure_info(message=summary, output=evidence, failure_type="FAIL")
    elif o.verdict is Verdict.WARN:
        warned = [j for j in o.judgments if j.verdict is Verdict.WARN]
        text = "\n".join(describe(j) for j in warned) or o.message
        props.append(("warning", text.splitlines()[0] if text else "WARN"))
        case.stdout = _join(f"WARN (SHOULD broken):\n{text}", _footer(o))
    elif o.verdict is Verdict.ERROR:
        message = o.message or "harness error"
        case.add_error_info(message=message.splitlines()[0], output=_join(message, _footer(o)),
                            error_type="ERROR")
    elif o.verdict is Verdict.NA:
        reasons = [j.detail or j.what for j in o.judgments if j.verdict is Verdict.NA]
        reason = o.message or "; ".join(r for r in reasons if r) or "not applicable"
        case.add_skipped_info(message=f"NA: {reason}")
    elif o.verdict is Verdict.UNTESTED:
        case.add_skipped_info(message="UNTESTED: the check judged none of its clauses"
                              + (f": {o.message}" if o.message else ""))
    return case, props


def build_junit(results: RunResults) -> ET.Element:
    env = results.environment or {}
    records = {(r.clause, r.device, r.transport): r for r in results.results}
    by_target: dict[tuple[str, str], list[CheckOutcome]] = {}
    for o in results.checks:
        by_target.setdefault((o.device, o.transport), []).append(o)
    suite_props = {name: str(env.get(key) or "") for key, name in ENVIRONMENT_PROPERTIES}
    suite_props.update({k: str(env[k]) for k in ("qemu_binary", "host", "started", "finished")
                        if env.get(k)})

    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "disabled": 0}
    time = 0.0
    for device in sorted({d for d, _ in by_target}):
        for transport in transport_order(t for d, t in by_target if d == device):
            outcomes = by_target[(device, transport)]
            cases_props = [_testcase(o, records, env) for o in outcomes]
            suite = TestSuite(f"{device}@{transport}", [c for c, _ in cases_props],
                              hostname=env.get("host") or None,
                              timestamp=env.get("started") or None,
                              properties={**suite_props, "profile": device, "transport": transport})
            element = suite.build_xml_doc()
            for testcase, (_, props) in zip(element.iter("testcase"), cases_props, strict=True):
                properties = ET.Element("properties")
                for name, value in props:
                    ET.SubElement(properties, "property", {"name": name, "value": value})
                testcase.insert(0, properties)
            for key in totals:
                totals[key] += int(element.get(key, "0"))
            time += float(element.get("time", "0") or 0)
            root.append(element)
    for key, total in totals.items():
        root.set(key, str(total))
    root.set("time", f"{time:.3f}")
    root.set("name", "virtio-conformance")
    _clean(root)
    return root


def render_junit(results: RunResults) -> str:
    root = build_junit(results)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(results: RunResults, path) -> Path:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render_junit(results), encoding="utf-8")
    tmp.replace(path)
    return path
