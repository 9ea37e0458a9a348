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
    (checks / "test_0.py").write_text(CHECK.format(name="a", clause=PCI_VENDOR))
    (checks / "test_1.py").write_text(CHECK.format(name="b", clause=PCI_VENDOR)
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
