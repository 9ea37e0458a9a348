"""Device discovery: does the device say who it is, the way its transport requires?

PCI: Virtio Over PCI Bus / PCI Device Discovery (and the legacy-interface note on it).
MMIO: Virtio Over MMIO / MMIO Device Register Layout (identification registers).
"""

import pytest

from conformance.probe import regs

PCI = "transport/pci/pci-device-discovery"
PCI_LEGACY = "transport/pci/legacy-interfaces-a-note-on-pci-device-discovery"
MMIO = "transport/mmio/mmio-device-register-layout"
MMIO_LEGACY_VERSION = "transport/mmio/legacy-interface/reg-version-1"


@pytest.mark.clause(f"{PCI}/1", f"{PCI}/2", f"{PCI}/4", f"{PCI}/5", f"{PCI}/6",
                    f"{PCI_LEGACY}/prose-1", f"{PCI_LEGACY}/prose-2", f"{PCI_LEGACY}/prose-3")
def test_pci_identity(dut, judge):
    ids = dut.probe("identify")["registers"]
    vendor, device = ids["VendorID"], ids["DeviceID"]
    virtio_id = dut.profile.virtio_id
    modern_id = regs.PCI_MODERN_DEVICE_ID_BASE + virtio_id
    transitional_id = regs.PCI_TRANSITIONAL_DEVICE_IDS.get(virtio_id)
    evidence = f"config space of {dut.location}"

    judge.equal(f"{PCI}/1", vendor, regs.VIRTIO_VENDOR_PCI, what="PCI Vendor ID",
                detail=evidence)
    allowed = [modern_id] + ([transitional_id] if transitional_id is not None else [])
    judge.check(f"{PCI}/2", device in allowed, what="PCI Device ID", observed=device,
                expected=" or ".join(f"0x{a:x}" for a in allowed), detail=evidence)

    if dut.transport == "pci-transitional":
        # The legacy note's rules apply; the non-transitional SHOULDs do not.
        judge.check(f"{PCI_LEGACY}/prose-3", device in regs.PCI_TRANSITIONAL_IDS,
                    what="PCI Device ID (transitional range)", observed=device,
                    expected="0x1000..0x103f", detail=evidence)
        judge.equal(f"{PCI_LEGACY}/prose-1", ids["RevisionID"], 0, what="PCI Revision ID",
                    detail=evidence)
        judge.equal(f"{PCI_LEGACY}/prose-2", ids["SubsystemID"], virtio_id,
                    what="PCI Subsystem Device ID", detail=evidence)
    else:
        judge.check(f"{PCI}/4", 0x1040 <= device <= 0x107F, what="PCI Device ID range",
                    observed=device, expected="0x1040..0x107f", detail=evidence)
        judge.check(f"{PCI}/5", ids["RevisionID"] >= 1, what="PCI Revision ID",
                    observed=ids["RevisionID"], expected=">= 1", detail=evidence)
        judge.check(f"{PCI}/6", ids["SubsystemID"] >= 0x40, what="PCI Subsystem Device ID",
                    observed=ids["SubsystemID"], expected=">= 0x40", detail=evidence)


@pytest.mark.clause(f"{MMIO}/1", f"{MMIO}/2", MMIO_LEGACY_VERSION, f"{MMIO}/reg-deviceid-1")
def test_mmio_identity(dut, judge):
    probed = dut.probe("identify")
    ids = probed["registers"]
    trace = " ".join(f"{op}@0x{off:03x}={val:#x}" for op, off, _w, val in probed["accesses"])
    judge.equal(f"{MMIO}/1", ids["MagicValue"], regs.MMIO_MAGIC, what="MagicValue (0x000)",
                detail=trace)
    if dut.transport == "mmio-legacy":
        judge.equal(MMIO_LEGACY_VERSION, ids["Version"], 1, what="Version (0x004)",
                    detail=trace)
    else:
        judge.equal(f"{MMIO}/2", ids["Version"], 2, what="Version (0x004)", detail=trace)
    # A real device must not look like an empty slot (DeviceID 0): it shows its type.
    judge.equal(f"{MMIO}/reg-deviceid-1", ids["DeviceID"], dut.profile.virtio_id,
                what="DeviceID (0x008)", detail=trace)
