"""The discovery checks can fail: one mutated register flips the verdict of its clause.

Recordings come from a real run on QEMU 7.2 (virtio-blk and virtio-net, all four
transports); unmutated they PASS, which the first test shows.
"""

import pytest
from replay import load_recording, replay, verdicts, with_probe_output

PCI = "transport/pci/pci-device-discovery"
LEGACY = "transport/pci/legacy-interfaces-a-note-on-pci-device-discovery"
MMIO = "transport/mmio/mmio-device-register-layout"
MMIO_LEGACY_VERSION = "transport/mmio/legacy-interface/reg-version-1"
KEY = "identify {}"
CHECKS = ["test_pci_identity", "test_mmio_identity"]  # the recording holds only their probes


@pytest.fixture(scope="module")
def recording():
    return load_recording("discovery.json")


def _set(register, value):
    def change(output):
        output["registers"][register] = value
    return change


@pytest.mark.parametrize("target", ["virtio-blk@pci", "virtio-blk@pci-transitional",
                                    "virtio-net@mmio", "virtio-net@mmio-legacy"])
def test_recorded_qemu_devices_pass(tmp_path, recording, target):
    code, results = replay(tmp_path, recording, target, CHECKS)
    assert code == 0
    assert "FAIL" not in verdicts(results).values() and "ERROR" not in verdicts(results).values()


@pytest.mark.parametrize("target, register, value, clause, verdict, exit_code", [
    ("virtio-blk@pci", "VendorID", 0x8086, f"{PCI}/1", "FAIL", 1),
    ("virtio-blk@pci", "DeviceID", 0x1050, f"{PCI}/2", "FAIL", 1),
    ("virtio-blk@pci", "DeviceID", 0x1080, f"{PCI}/4", "WARN", 1),  # /2 fails too
    ("virtio-blk@pci", "RevisionID", 0, f"{PCI}/5", "WARN", 0),
    ("virtio-blk@pci", "SubsystemID", 0x2, f"{PCI}/6", "WARN", 0),
    ("virtio-blk@pci-transitional", "RevisionID", 1, f"{LEGACY}/prose-1", "FAIL", 1),
    ("virtio-blk@pci-transitional", "SubsystemID", 0x1100, f"{LEGACY}/prose-2", "FAIL", 1),
    ("virtio-blk@pci-transitional", "DeviceID", 0x1042, f"{LEGACY}/prose-3", "FAIL", 1),
    ("virtio-net@mmio", "MagicValue", 0x76697274, f"{MMIO}/1", "FAIL", 1),
    ("virtio-net@mmio", "Version", 1, f"{MMIO}/2", "FAIL", 1),
    ("virtio-net@mmio-legacy", "Version", 2, MMIO_LEGACY_VERSION, "FAIL", 1),
    ("virtio-net@mmio", "DeviceID", 0, f"{MMIO}/reg-deviceid-1", "FAIL", 1),
])
def test_one_broken_register_flips_its_clause(tmp_path, recording, target, register, value,
                                              clause, verdict, exit_code):
    mutated = with_probe_output(recording, target, KEY, _set(register, value))
    code, results = replay(tmp_path, mutated, target, CHECKS)
    assert verdicts(results)[clause] == verdict
    assert code == exit_code
    record = next(r for r in results.results if r.clause == clause)
    judged = record.evidence["judgments"][0]
    assert judged["expected"] is not None and judged["observed"] is not None


def test_a_should_violation_fails_the_gate_only_when_strict(tmp_path, recording):
    mutated = with_probe_output(recording, "virtio-blk@pci", KEY, _set("RevisionID", 0))
    code, _ = replay(tmp_path, mutated, "virtio-blk@pci", CHECKS, extra=["--strict"])
    assert code == 1


def test_a_probe_that_cannot_observe_is_an_error_not_a_failure(tmp_path, recording):
    def broken(output):
        output.clear()
        output["error"] = "PermissionError: /dev/mem"
    mutated = with_probe_output(recording, "virtio-net@mmio", KEY, broken)
    code, results = replay(tmp_path, mutated, "virtio-net@mmio", CHECKS)
    assert set(verdicts(results).values()) <= {"ERROR", "NA"}
    assert "ERROR" in verdicts(results).values()
    assert code == 3
    check = next(c for c in results.checks if c.verdict.value == "ERROR")
    assert check.attempt == 1  # it ran and could not observe: trying again cannot help


def test_a_crashing_check_is_an_error(tmp_path, recording):
    def missing(output):
        del output["registers"]["Version"]
    mutated = with_probe_output(recording, "virtio-net@mmio", KEY, missing)
    code, results = replay(tmp_path, mutated, "virtio-net@mmio", CHECKS)
    crashed = next(c for c in results.checks if "mmio_identity" in c.nodeid)
    assert crashed.verdict.value == "ERROR" and "check crashed" in crashed.message
    assert code == 3


def test_failures_carry_a_reproducer(tmp_path, recording):
    mutated = with_probe_output(recording, "virtio-blk@pci", KEY, _set("VendorID", 0))
    _, results = replay(tmp_path, mutated, "virtio-blk@pci", CHECKS)
    failed = next(c for c in results.checks if c.verdict.value == "FAIL")
    assert failed.reproducer == ("virtio-conformance run --profile virtio-blk --transport pci "
                                 "--check test_discovery.py::test_pci_identity")


def test_a_waived_failure_stays_fail_but_passes_the_gate(tmp_path, recording):
    mutated = with_probe_output(recording, "virtio-blk@pci", KEY, _set("VendorID", 0x8086))
    waivers = tmp_path / "waivers.toml"
    waivers.write_text(f'[[waiver]]\nclause = "{PCI}/1"\ndevice = "virtio-blk"\n'
                       'reason = "vendor ID under review"\nexpires = 2999-12-31\n')
    code, results = replay(tmp_path, mutated, "virtio-blk@pci", CHECKS,
                           extra=["--waivers", str(waivers)])
    record = next(r for r in results.results if r.clause == f"{PCI}/1")
    assert record.verdict.value == "FAIL" and record.waiver["reason"] == "vendor ID under review"
    assert code == 0
    # The same waiver past its expiry no longer applies.
    waivers.write_text(waivers.read_text().replace("2999-12-31", "2020-01-01"))
    (tmp_path / "again").mkdir()
    code, results = replay(tmp_path / "again", mutated, "virtio-blk@pci", CHECKS,
                           extra=["--waivers", str(waivers)])
    assert code == 1
