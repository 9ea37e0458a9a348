"""The PCI transport checks can fail: one mutated observation flips its clause.

The recording (tests/recordings/pci.json) comes from a real run on QEMU 7.2: virtio-blk,
-net, -rng, -9p, vhost-user-blk and net with modern-pio-notify=on, on pci and
pci-transitional.  Unmutated, everything passes except what QEMU really breaks.
"""

import pytest
from replay import load_recording, replay, verdicts, with_probe_output

BUS = "transport/pci/virtio-over-pci-bus"
CAPS = "transport/pci/virtio-structure-pci-capabilities"
COMMON = "transport/pci/common-configuration-structure-layout"
LAYOUT = "transport/pci/pci-device-layout"
NOTIFY = "transport/pci/notification-capability"
ISR = "transport/pci/isr-status-capability"
DEVCFG = "transport/pci/device-specific-configuration"
SHM = "transport/pci/shared-memory-capability"
VENDOR = "transport/pci/vendor-data-capability"
WINDOW = "transport/pci/pci-configuration-access-capability"
MSIX = "transport/pci/msi-x-vector-configuration"
USED = "transport/pci/used-buffer-notifications"
CFGCHANGE = "transport/pci/notification-of-device-configuration-changes"
LEGACY = "transport/pci/legacy-interfaces-a-note-on-pci-device-layout"
DETECT = "transport/pci/legacy-interface-a-note-on-device-layout-detection"
MMR = "proposal/pci-legacy-mmr"

CHECKS = "test_pci_transport.py::"
BLK, BLK_T, NET_T, RNG = ("virtio-blk@pci", "virtio-blk@pci-transitional",
                          "virtio-net@pci-transitional", "virtio-rng@pci")
PIO = "virtio-net-modern-pio-notify@pci"
ALL = ["test_pci_capabilities", "test_pci_common_configuration", "test_pci_isr_used_buffer",
       "test_pci_isr_config_change", "test_pci_msix_vector_mapping",
       "test_pci_msix_queue_no_vector", "test_pci_msix_config_no_vector",
       "test_pci_config_access_window", "test_pci_legacy_interface"]
CAPS_KEY = "pci_caps {}"


@pytest.fixture(scope="module")
def recording():
    return load_recording("pci.json")


def run(tmp_path, recording, target, check, mutate=None, key=None):
    rec = recording if mutate is None else with_probe_output(recording, target, key, mutate)
    code, results = replay(tmp_path, rec, target, checks=[CHECKS + check])
    return code, verdicts(results), results


@pytest.mark.parametrize("target", [BLK, BLK_T, NET_T, RNG, "virtio-9p@pci-transitional",
                                    "vhost-user-blk@pci"])
def test_recorded_qemu_devices_pass(tmp_path, recording, target):
    code, results = replay(tmp_path, recording, target, checks=[CHECKS + c for c in ALL])
    found = verdicts(results)
    assert "FAIL" not in found.values() and "ERROR" not in found.values(), found
    assert code == 0


def test_qemu_pci_cfg_window_ignores_the_bar_field(tmp_path, recording):
    # A finding: with modern-pio-notify=on, a window read of the I/O notify structure
    # (bar 2) returns the common configuration's device_feature_select from bar 4.
    code, found, results = run(tmp_path, recording, PIO, "test_pci_config_access_window")
    assert found[f"{WINDOW}/3"] == "FAIL" and found[f"{WINDOW}/2"] == "PASS"
    check = next(c for c in results.checks if c.verdict.value == "FAIL")
    assert "bar2+0x0.2" in check.message
    # The exact accesses: window set to bar 2, offset 0, length 2; data read; direct read.
    assert "w cfg+0x09c.1=0x2; w cfg+0x0a0.4=0x0; w cfg+0x0a4.4=0x2; r cfg+0x0a8.2=0x1; " \
        "r bar2+0x0000.2=0x0" in check.message
    assert code == 1


# ---------------------------------------------------------------- capabilities
def _cap(out, type_name, n=0):
    return [c for c in out["caps"]["virtio"] if c["type_name"] == type_name][n]


def _set_cap(type_name, field, value, n=0):
    def change(out):
        _cap(out, type_name, n)[field] = value
    return change


def _drop_caps(type_name):
    def change(out):
        out["caps"]["virtio"] = [c for c in out["caps"]["virtio"]
                                 if c["type_name"] != type_name]
    return change


def _add_cap(**cap):
    def change(out):
        base = {"at": 0xF0, "cap_len": 16, "raw": ""}
        base.update(cap)
        out["caps"]["virtio"].append(base)
    return change


@pytest.mark.parametrize("target, mutate, clause, verdict", [
    (BLK, _set_cap("common", "offset", 0x2), f"{COMMON}/1", "FAIL"),
    (BLK, _drop_caps("common"), f"{COMMON}/2", "FAIL"),
    (BLK, _set_cap("common", "offset", 0x4000), f"{BUS}/1", "FAIL"),  # past the 16K BAR
    (BLK, _set_cap("common", "length", 0x20), f"{COMMON}/2", "FAIL"),
    (BLK, _set_cap("notify", "cap_len", 16), f"{CAPS}/1", "FAIL"),
    (BLK, _drop_caps("notify"), f"{NOTIFY}/1", "FAIL"),
    (BLK, _set_cap("notify", "offset", 0x3001), f"{NOTIFY}/2", "FAIL"),
    (BLK, _set_cap("notify", "notify_off_multiplier", 3), f"{NOTIFY}/3", "FAIL"),
    (NET_T, _set_cap("notify", "length", 8), f"{NOTIFY}/4", "FAIL"),
    (NET_T, _set_cap("notify", "length", 8), f"{NOTIFY}/5", "FAIL"),
    (BLK, _drop_caps("isr"), f"{ISR}/1", "FAIL"),
    (BLK, _drop_caps("device"), f"{DEVCFG}/prose-1", "FAIL"),
    (BLK, _set_cap("device", "offset", 0x2002), f"{DEVCFG}/1", "FAIL"),
    (BLK, _drop_caps("pci_cfg"), f"{WINDOW}/1", "FAIL"),
    (BLK, _add_cap(cfg_type=9, type_name="vendor", vendor_id=0x1AF4, cap_len=8),
     f"{VENDOR}/1", "FAIL"),
    (BLK, _add_cap(cfg_type=9, type_name="vendor", vendor_id=0x8086, cap_len=10),
     f"{VENDOR}/2", "FAIL"),
    (BLK, _add_cap(cfg_type=8, type_name="shared_memory", bar=4, id=0, offset=0, length=0,
                   offset64=0x3000, length64=0x2000, cap_len=24), f"{SHM}/1", "FAIL"),
])
def test_a_broken_capability_flips_its_clause(tmp_path, recording, target, mutate, clause,
                                              verdict):
    code, found, results = run(tmp_path, recording, target, "test_pci_capabilities", mutate,
                               CAPS_KEY)
    assert found[clause] == verdict
    assert code == 1
    judged = next(j for c in results.checks for j in c.judgments if j.clause == clause)
    assert judged.detail  # the capabilities and BARs behind the verdict


def test_notify_rules_switch_with_notification_data_offered(tmp_path, recording):
    def offer(out):
        out["features"] |= 1 << 38
        _cap(out, "notify")["notify_off_multiplier"] = 2  # fine for 2 bytes, not for 4
    code, found, _ = run(tmp_path, recording, BLK, "test_pci_capabilities", offer, CAPS_KEY)
    assert found[f"{NOTIFY}/6"] == "FAIL" and found[f"{NOTIFY}/3"] == "NA"


def test_legacy_mmr_clauses_are_judged_when_the_vsec_is_there(tmp_path, recording):
    def add(out):
        out["legacy_mmr_views"] = [{"window": {"at": 0x100, "cfg_type": 10, "bar": 0,
                                               "offset": 0x10, "length": 0x100,
                                               "vsec_len": 20}}]
    code, found, _ = run(tmp_path, recording, BLK_T, "test_pci_capabilities", add, CAPS_KEY)
    assert found[f"{MMR}/capability/2"] == "FAIL"  # bar 0 is the I/O BAR
    assert found[f"{MMR}/offset/2"] == "WARN" and found[f"{MMR}/length/1"] == "WARN"
    assert found[f"{MMR}/offset/1"] == "PASS"
    _, found, _ = run(tmp_path, recording, BLK_T, "test_pci_capabilities")
    assert found[f"{MMR}/capability/1"] == "NA"


# ---------------------------------------------------------------- common configuration
@pytest.mark.parametrize("target, mutate, clause", [
    (BLK, lambda o: o["feature_banks"].__setitem__("2", 1), f"{COMMON}/3"),
    (BLK, lambda o: o["driver_feature_readback"]["1"].__setitem__("read", 0), f"{COMMON}/4"),
    (BLK, lambda o: o["reset"].__setitem__("status_after_reset", 0xB), f"{COMMON}/7"),
    (BLK, lambda o: o["reset"]["queues_after"][0].__setitem__("enable", 1), f"{COMMON}/8"),
    (BLK, lambda o: o["reset"].__setitem__("config_vector_after", 0), f"{MSIX}/7"),
    (BLK, lambda o: o["queue_reset"].__setitem__("after_device_reset", 1), f"{COMMON}/9"),
    (BLK, lambda o: o["queue_reset"]["enabled"].__setitem__("queue_reset", 1), f"{COMMON}/10"),
    (BLK, lambda o: o["queue_reset"]["done"].__setitem__("queue_enable", 1), f"{COMMON}/11"),
    (BLK, lambda o: o["queue_reset"].__setitem__("queue_reset_reads", [1, 1, 10000]),
     f"{COMMON}/12"),
    (BLK, lambda o: o["queue_reset"]["done"].__setitem__("queue_enable", 1), f"{COMMON}/13"),
    (BLK, lambda o: o["absent_queues"][0].__setitem__("size", 256), f"{COMMON}/14"),
    (BLK, lambda o: o["queues"][0].__setitem__("size", 100), f"{COMMON}/15"),
    (BLK, lambda o: o["halves"]["high_then_low"].__setitem__("read_high_first", 0),
     f"{LAYOUT}/1"),
    (BLK, lambda o: o["features_ok"].__setitem__("status", 0x8), "basic/feature-bits/"
     "feature-bits/2"),
])
def test_a_broken_common_configuration_flips_its_clause(tmp_path, recording, target, mutate,
                                                        clause):
    code, found, _ = run(tmp_path, recording, target, "test_pci_common_configuration",
                         mutate, "pci_common {}")
    assert found[clause] == "FAIL"
    assert code == 1


# ---------------------------------------------------------------- ISR
ISR_KEY = 'pci_isr_queue {"virtio_id": 4}'


@pytest.mark.parametrize("field, value, clause", [
    ("isr_first", 2, f"{ISR}/3"),
    ("status_interrupt_after_used", False, f"{ISR}/4"),
    ("status_interrupt_after_read", True, f"{ISR}/4"),
    ("isr_second", 1, f"{ISR}/5"),
])
def test_a_broken_isr_flips_its_clause(tmp_path, recording, field, value, clause):
    code, found, _ = run(tmp_path, recording, RNG, "test_pci_isr_used_buffer",
                         lambda o: o.__setitem__(field, value), ISR_KEY)
    assert found[clause] == "FAIL"


def test_no_interrupt_at_all_is_not_an_isr_finding(tmp_path, recording):
    def silent(o):
        o.update(isr_first=0, status_interrupt_after_used=False)
    _, found, _ = run(tmp_path, recording, RNG, "test_pci_isr_used_buffer", silent, ISR_KEY)
    assert found[f"{ISR}/3"] == "NA" and found[f"{ISR}/4"] == "PASS"


def test_a_config_change_without_the_isr_bit_fails(tmp_path, recording):
    key = 'pci_config_event {"phase": "observe", "virtio_id": 1}'
    code, found, _ = run(tmp_path, recording, NET_T, "test_pci_isr_config_change",
                         lambda o: o.__setitem__("isr_first", 0), key)
    assert found[f"{ISR}/2"] == "FAIL"
    _, found, _ = run(tmp_path, recording, NET_T, "test_pci_isr_config_change")
    assert found[f"{ISR}/2"] == "PASS" and found[f"{ISR}/4"] == "PASS"


# ---------------------------------------------------------------- MSI-X
def _vector_write(who, vector, read):
    def change(out):
        rows = out["config"] if who == "config" else out["queues"][0]["writes"]
        for row in rows:
            if row[0] == vector:
                row[1] = read
    return change


@pytest.mark.parametrize("mutate, clause, verdict", [
    (lambda o: o.__setitem__("table_size", 1), f"{MSIX}/1", "WARN"),
    (_vector_write("config", 1, 0xFFFF), f"{MSIX}/4", "FAIL"),
    (_vector_write("queue", 0xFFFF, 0), f"{MSIX}/5", "FAIL"),
    (_vector_write("config", 2, 2), f"{MSIX}/9", "FAIL"),  # 2 is past a 2-entry table
    (_vector_write("queue", 2, 2), f"{MSIX}/2", "FAIL"),
    (_vector_write("queue", 1, 0), f"{MSIX}/6", "FAIL"),
])
def test_a_broken_vector_mapping_flips_its_clause(tmp_path, recording, mutate, clause,
                                                  verdict):
    _, found, _ = run(tmp_path, recording, BLK, "test_pci_msix_vector_mapping", mutate,
                      "pci_msix_vectors {}")
    assert found[clause] == verdict


def test_a_queue_on_no_vector_that_leaves_a_pending_bit_fails(tmp_path, recording):
    key = 'pci_queue_vector {"virtio_id": 4}'
    _, found, _ = run(tmp_path, recording, RNG, "test_pci_msix_queue_no_vector",
                      lambda o: o["no_vector"].__setitem__("pending", [0]), key)
    assert found[f"{USED}/1"] == "FAIL"
    # Without a working control the PBA proves nothing: NA, not PASS.
    _, found, _ = run(tmp_path, recording, RNG, "test_pci_msix_queue_no_vector",
                      lambda o: o["control"].__setitem__("pending", []), key)
    assert found[f"{USED}/1"] == "NA"


def test_a_config_change_on_no_vector_that_leaves_a_pending_bit_fails(tmp_path, recording):
    key = 'pci_config_event {"phase": "observe", "vector": 65535, "virtio_id": 1}'
    _, found, _ = run(tmp_path, recording, NET_T, "test_pci_msix_config_no_vector",
                      lambda o: o.__setitem__("pending", [0]), key)
    assert found[f"{CFGCHANGE}/1"] == "FAIL"
    _, found, _ = run(tmp_path, recording, NET_T, "test_pci_msix_config_no_vector")
    assert found[f"{CFGCHANGE}/1"] == "PASS" and found[f"{MSIX}/5"] == "PASS"


# ---------------------------------------------------------------- config window
def test_a_window_that_reads_or_writes_elsewhere_fails(tmp_path, recording):
    key = "pci_cfg_window {}"
    _, found, _ = run(tmp_path, recording, BLK, "test_pci_config_access_window",
                      lambda o: o["reads"][0].__setitem__("window", 0x5A), key)
    assert found[f"{WINDOW}/3"] == "FAIL"
    _, found, _ = run(tmp_path, recording, BLK, "test_pci_config_access_window",
                      lambda o: o["writes"][1].__setitem__("direct", 0), key)
    assert found[f"{WINDOW}/2"] == "FAIL"


# ---------------------------------------------------------------- legacy BAR0
@pytest.mark.parametrize("mutate, clause", [
    (lambda o: o["bar0"].__setitem__("kind", "mem32"), f"{LEGACY}/prose-1"),
    (lambda o: o["queue_sizes"][0].__setitem__("legacy", 128), f"{DETECT}/prose-1"),
    (lambda o: o["config_msix_off"]["legacy4"].__setitem__(0, 0x77), f"{LEGACY}/prose-3"),
    (lambda o: o["config_msix_on"].__setitem__("legacy1", [0] * 32), f"{LEGACY}/prose-5"),
    (lambda o: o.__setitem__("modern_driver_bank1_after_legacy", 1), f"{LEGACY}/prose-6"),
])
def test_a_broken_legacy_block_flips_its_clause(tmp_path, recording, mutate, clause):
    _, found, _ = run(tmp_path, recording, BLK_T, "test_pci_legacy_interface", mutate,
                      "pci_legacy {}")
    assert found[clause] == "FAIL"


def test_legacy_reads_past_the_configuration_end_are_not_compared(tmp_path, recording):
    # virtio-9p's configuration is 6 bytes; a 4-byte read at 4 straddles its end.
    _, found, _ = run(tmp_path, recording, "virtio-9p@pci-transitional",
                      "test_pci_legacy_interface")
    assert found[f"{LEGACY}/prose-3"] == "PASS"
