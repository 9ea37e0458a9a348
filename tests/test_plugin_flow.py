"""How the plugin runs checks: setup and teardown across NA checks."""

import json
import textwrap

import pytest
from replay import load_recording

from conformance.results import RunResults

PCI_VENDOR = "transport/pci/pci-device-discovery/1"
MMIO_MAGIC = "transport/mmio/mmio-device-register-layout/1"

CHECK = textwrap.dedent('''
    import pytest

    @pytest.fixture(scope="module")
    def module_state():
        yield "ready"

    @pytest.mark.clause({clause!r})
    def test_{name}(dut, judge, module_state):
        ids = dut.probe("identify")["registers"]
        judge.check({clause!r}, ids["VendorID"] == 0x1AF4, what="vendor",
                    observed=ids["VendorID"], expected=0x1AF4)
''')


def test_checks_after_na_checks_still_run(tmp_path):
    # Regression: device 1 runs a check in module 0, then one in module 1 followed by an
    # NA check in that same module; device 2 then starts again in module 0.  NA checks
    # are never set up, so the module-1 check's teardown must aim at device 2's first
    # check, or module 1 stays on pytest's setup stack and every later check crashes.
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_stack_0.py").write_text(CHECK.format(name="a", clause=PCI_VENDOR))
    (checks / "test_stack_1.py").write_text(CHECK.format(name="b", clause=PCI_VENDOR)
                                      + CHECK.format(name="c", clause=MMIO_MAGIC)
                                      .replace("def module_state", "def unused_state"))
    recording = tmp_path / "rec.json"
    recording.write_text(json.dumps(load_recording("discovery.json")))
    out = tmp_path / "out"
    code = pytest.main(["--vc", "--vc-replay", str(recording), "--vc-profile", "virtio-blk",
                        "--vc-profile", "virtio-net", "--vc-transport", "pci", "--vc-output",
                        str(out), "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                        str(checks)])
    results = RunResults.read(out / "results.json")
    verdicts = {c.nodeid.split("::")[1]: c.verdict.value for c in results.checks}
    expected = {}
    for device in ("virtio-blk", "virtio-net"):
        expected.update({f"test_a[{device}@pci]": "PASS", f"test_b[{device}@pci]": "PASS",
                         f"test_c[{device}@pci]": "NA"})
    assert verdicts == expected, [c.message[-200:] for c in results.checks]
    assert code == 0


FLAKY = textwrap.dedent('''
    import pytest
    from pathlib import Path
    from conformance.errors import MachineError

    @pytest.mark.clause({clause!r})
    def test_flaky(dut, judge):
        marker = Path({marker!r})
        if not marker.exists():
            marker.touch()
            raise MachineError("guest died under the check")
        ids = dut.probe("identify")["registers"]
        judge.equal({clause!r}, ids["VendorID"], 0x1AF4, what="vendor")

    @pytest.mark.clause({clause!r})
    def test_broken(dut, judge):
        judge.equal({clause!r}, 0x8086, 0x1AF4, what="vendor")
''')


def test_transient_errors_are_retried_once_and_findings_never(tmp_path):
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_flaky.py").write_text(FLAKY.format(clause=PCI_VENDOR,
                                                       marker=str(tmp_path / "died")))
    recording = tmp_path / "rec.json"
    recording.write_text(json.dumps(load_recording("discovery.json")))
    out = tmp_path / "out"
    code = pytest.main(["--vc", "--vc-replay", str(recording), "--vc-profile", "virtio-blk",
                        "--vc-transport", "pci", "--vc-output", str(out), "-p",
                        "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(checks)])
    checks_run = {c.nodeid.split("::")[1]: c for c in RunResults.read(out / "results.json").checks}
    flaky, broken = checks_run["test_flaky[virtio-blk@pci]"], checks_run["test_broken[virtio-blk@pci]"]
    assert (flaky.verdict.value, flaky.attempt) == ("PASS", 2)
    assert (broken.verdict.value, broken.attempt) == ("FAIL", 1)
    assert code == 1


def test_destructive_checks_run_last_for_their_device(tmp_path):
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_destructive_0.py").write_text(
        CHECK.format(name="breaks_it", clause=PCI_VENDOR).replace(
            "@pytest.mark.clause", "@pytest.mark.destructive\n@pytest.mark.clause"))
    (checks / "test_destructive_1.py").write_text(CHECK.format(name="needs_it",
                                                               clause=PCI_VENDOR))
    recording = tmp_path / "rec.json"
    recording.write_text(json.dumps(load_recording("discovery.json")))
    out = tmp_path / "out"
    pytest.main(["--vc", "--vc-replay", str(recording), "--vc-profile", "virtio-blk",
                 "--vc-profile", "virtio-net", "--vc-transport", "pci", "--vc-output", str(out),
                 "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path), str(checks)])
    order = [c.nodeid.split("::")[1] for c in RunResults.read(out / "results.json").checks]
    assert order == ["test_needs_it[virtio-blk@pci]", "test_breaks_it[virtio-blk@pci]",
                     "test_needs_it[virtio-net@pci]", "test_breaks_it[virtio-net@pci]"]
