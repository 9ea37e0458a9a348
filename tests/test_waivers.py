"""Waivers: the file format, its errors, and how they mark results."""

from __future__ import annotations

import datetime as dt

import pytest

from conformance.errors import ConfigError
from conformance.reports import exit_code_for_run
from conformance.results import ClauseResult, RunResults, Verdict
from conformance.waivers import Waiver, apply_waivers, load_waivers, parse_waivers

A = "transport/pci/pci-common-configuration/1"
B = "basic/device-status-field/4"


def run() -> RunResults:
    def r(clause, device, transport, verdict, level="MUST"):
        return ClauseResult(clause=clause, level=level, verdict=verdict, device=device,
                            transport=transport)
    return RunResults(environment={"qemu_version": "7.2.22"}, results=[
        r(A, "virtio-blk", "pci", Verdict.FAIL),
        r(A, "virtio-blk", "pci-transitional", Verdict.FAIL),
        r(A, "virtio-net", "pci", Verdict.FAIL),
        r(A, "virtio-net", "pci-transitional", Verdict.PASS),
        r(B, "virtio-blk", "mmio", Verdict.WARN, "SHOULD"),
        r(B, "virtio-blk", "pci", Verdict.ERROR, "SHOULD"),
    ])


def waivers(text: str) -> list[Waiver]:
    return parse_waivers(text, "w.toml")


def by_key(results: RunResults) -> dict[tuple[str, str, str], ClauseResult]:
    return {(r.clause, r.device, r.transport): r for r in results.results}


def test_parse_defaults_and_dates():
    ws = waivers(f"""
[[waiver]]
clause = "{A}"
reason = "known QEMU issue"
expires = 2025-12-31

[[waiver]]
clause = "{B}"
device = "virtio-*"
transport = "mmio"
reason = "  spaces trimmed  "
expires = "2026-01-15"
""")
    assert ws[0] == Waiver(clause=A, reason="known QEMU issue", expires=dt.date(2025, 12, 31),
                           device="*", transport="*", source="w.toml#1")
    assert ws[1].expires == dt.date(2026, 1, 15)
    assert ws[1].reason == "spaces trimmed"
    assert ws[1].source == "w.toml#2"
    assert parse_waivers("", "empty.toml") == []


@pytest.mark.parametrize("text, message", [
    ("[[waiver]\nclause = 1", "w.toml: not valid TOML"),
    ('[[waiver]]\nclause = "x"\nexpires = 2025-01-01', "w.toml: waiver #1 (clause 'x'): missing reason"),
    ('[[waiver]]\nclause = "x"\nreason = "r"\nexpires = 2025-01-01\ntransprot = "pci"',
     "unknown key(s) ['transprot']"),
    ('[[waiver]]\nclause = "x"\nreason = "r"\nexpires = "next year"',
     "waiver #1 (clause 'x'): 'expires' must be a date"),
    ('[[waiver]]\nclause = "x"\nreason = ""\nexpires = 2025-01-01', "'reason' must be a non-empty"),
    ('[[waiver]]\nclause = "x"\nreason = "r"\ndevice = 3\nexpires = 2025-01-01',
     "'device' must be a non-empty string"),
    ('waivers = []', "unknown top-level key(s) ['waivers']"),
    ('waiver = "x"', "must be an array of tables"),
])
def test_malformed_files_name_file_and_entry(text, message):
    with pytest.raises(ConfigError, match="^w.toml") as e:
        waivers(text)
    assert message in str(e.value)


def test_second_entry_is_named():
    with pytest.raises(ConfigError, match=r"waiver #2 \(clause 'y'\): missing expires"):
        waivers('[[waiver]]\nclause = "x"\nreason = "r"\nexpires = 2025-01-01\n'
                '[[waiver]]\nclause = "y"\nreason = "r"\n')


def test_unknown_clause_rejected_when_catalog_known():
    text = f'[[waiver]]\nclause = "{A}x"\nreason = "r"\nexpires = 2025-01-01\n'
    with pytest.raises(ConfigError, match="no clause"):
        parse_waivers(text, "w.toml", known_clauses={A, B})
    assert parse_waivers(text, "w.toml")  # without a catalog it cannot tell


def test_load_waivers_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read waivers file .*missing.toml"):
        load_waivers(tmp_path / "missing.toml")
    path = tmp_path / "w.toml"
    path.write_text(f'[[waiver]]\nclause = "{A}"\nreason = "r"\nexpires = 2030-01-01\n')
    assert load_waivers(path)[0].source == f"{path}#1"


def test_apply_marks_matching_failures_only():
    ws = waivers(f"""
[[waiver]]
clause = "{A}"
device = "virtio-blk"
transport = "pci*"
reason = "blk on pci: QEMU issue 42"
expires = 2025-06-30

[[waiver]]
clause = "{B}"
reason = "should-level, accepted"
expires = 2025-06-30
""")
    before = run()
    after = apply_waivers(before, ws, dt.date(2025, 6, 1))
    got = by_key(after)
    assert got[(A, "virtio-blk", "pci")].waiver == {
        "reason": "blk on pci: QEMU issue 42", "expires": "2025-06-30", "source": "w.toml#1"}
    assert got[(A, "virtio-blk", "pci")].verdict is Verdict.FAIL  # waived stays FAIL
    assert got[(A, "virtio-blk", "pci-transitional")].waiver is not None
    assert got[(A, "virtio-net", "pci")].waiver is None  # device glob did not match
    assert got[(B, "virtio-blk", "mmio")].waiver is not None  # WARN is waivable
    assert got[(B, "virtio-blk", "pci")].waiver is None  # ERROR is never waived
    assert all(r.waiver is None for r in before.results)  # the input is left alone
    summary = after.environment["waivers"]
    assert summary["applied"] == 3 and summary["expired"] == [] and summary["unused"] == []
    assert after.environment["qemu_version"] == "7.2.22"
    # The waived net failure is still unwaived, so the gate still fails...
    assert exit_code_for_run(after) == 1
    # ...until it is waived too.
    ws.append(Waiver(clause=A, reason="net too", expires=dt.date(2025, 6, 30), device="virtio-net"))
    assert exit_code_for_run(apply_waivers(before, ws, dt.date(2025, 6, 1))) == 3  # ERROR left
    assert exit_code_for_run(RunResults.from_json(
        apply_waivers(before, ws, dt.date(2025, 6, 1)).to_json())) == 3


def test_expiry_is_inclusive_and_expired_waivers_are_listed():
    ws = waivers(f'[[waiver]]\nclause = "{A}"\nreason = "old"\nexpires = 2025-06-30\n')
    on_the_day = apply_waivers(run(), ws, dt.date(2025, 6, 30))
    assert by_key(on_the_day)[(A, "virtio-net", "pci")].waiver is not None
    day_after = apply_waivers(run(), ws, dt.date(2025, 7, 1))
    assert all(r.waiver is None for r in day_after.results)
    expired = day_after.environment["waivers"]["expired"]
    assert len(expired) == 1
    assert expired[0]["reason"] == "old" and expired[0]["expires"] == "2025-06-30"
    assert {(m["device"], m["transport"]) for m in expired[0]["matches"]} == {
        ("virtio-blk", "pci"), ("virtio-blk", "pci-transitional"), ("virtio-net", "pci")}


def test_unused_first_match_wins_and_reapplying_replaces():
    ws = waivers(f"""
[[waiver]]
clause = "{A}"
reason = "first"
expires = 2030-01-01

[[waiver]]
clause = "{A}"
reason = "second"
expires = 2030-01-01

[[waiver]]
clause = "general/never-fails/1"
reason = "stale"
expires = 2030-01-01
""")
    once = apply_waivers(run(), ws, dt.date(2025, 1, 1))
    assert {r.waiver["reason"] for r in once.results if r.waiver} == {"first"}
    assert [w["reason"] for w in once.environment["waivers"]["unused"]] == ["second", "stale"]
    again = apply_waivers(once, [], dt.date(2025, 1, 1))
    assert all(r.waiver is None for r in again.results)
