"""The PCI capability walk on recorded and hand-made configuration space dumps.

The recorded dumps come from real QEMU 7.2 functions (tests/recordings/pci.json); the
walk run offline on them must give what it gave in the guest.  Hand-made dumps cover
what QEMU never shows: shared memory, vendor data, unknown cfg_type values, a looping
list, a 64-bit BAR and the legacy MMR proposal's VSEC.
"""

import json

import pytest
from replay import load_recording

from conformance.probe import pcicaps, regs
from conformance.probe.pcicaps import ConfigDump


@pytest.fixture(scope="module")
def recording():
    return load_recording("pci.json")


def _caps_output(recording, target):
    return json.loads(recording["targets"][target]["probes"]["pci_caps {}"]["stdout"])


@pytest.mark.parametrize("target", ["virtio-blk@pci", "virtio-blk@pci-transitional",
                                    "virtio-net-modern-pio-notify@pci",
                                    "virtio-9p@pci-transitional"])
def test_offline_walk_of_a_recorded_dump_matches_the_guest_walk(recording, target):
    out = _caps_output(recording, target)
    walked = pcicaps.walk(ConfigDump(out["config"]), [tuple(r) for r in out["resources"]])
    # The command register may differ (the probe set bus mastering after its dump).
    walked.pop("command")
    guest = dict(out["caps"])
    guest.pop("command")
    assert json.loads(json.dumps(walked)) == guest


def test_the_io_notify_capability_of_modern_pio_notify_is_found(recording):
    out = _caps_output(recording, "virtio-net-modern-pio-notify@pci")
    notify = [c for c in out["caps"]["virtio"] if c["type_name"] == "notify"]
    kinds = {out["caps"]["bars"][c["bar"]]["kind"] for c in notify}
    assert len(notify) == 2 and "io" in kinds


class Space:
    """A writable 4 KiB configuration space for building dumps."""

    def __init__(self, size=256):
        self.data = bytearray(size)
        self.put(0x06, regs.PCI_STATUS_BITS["CAP_LIST"], 2)
        self.last = 0x34

    def put(self, off, value, width):
        self.data[off:off + width] = value.to_bytes(width, "little")

    def cap(self, at, cap_id, body):
        self.put(self.last if self.last == 0x34 else self.last + 1, at, 1)
        self.data[at] = cap_id
        self.data[at + 2:at + 2 + len(body)] = body
        self.last = at

    def virtio(self, at, cfg_type, bar, offset, length, cap_len=16, extra=b""):
        body = bytes([cap_len, cfg_type, bar, 0, 0, 0]) + offset.to_bytes(4, "little") + \
            length.to_bytes(4, "little") + extra
        self.cap(at, regs.PCI_CAP_ID_VNDR, body)

    def dump(self):
        return ConfigDump(self.data.hex())


def test_every_cfg_type_is_decoded_with_its_own_fields():
    s = Space()
    s.put(0x10, 0xFEB00000 | 0x4, 4)  # BAR0: 64-bit memory
    s.put(0x14, 0x1, 4)  # its upper half
    s.virtio(0x40, 1, 0, 0, 0x1000)
    s.virtio(0x50, 2, 0, 0x3000, 0x1000, cap_len=20, extra=(4).to_bytes(4, "little"))
    s.virtio(0x68, 8, 0, 0x8000, 0x2000, cap_len=24,
             extra=(1).to_bytes(4, "little") + (0).to_bytes(4, "little"))
    s.cap(0x80, regs.PCI_CAP_ID_VNDR, bytes([8, 9]) + (0x8086).to_bytes(2, "little") + b"\0\0")
    s.virtio(0x88, 7, 0, 0, 0)  # a cfg_type 1.4 does not define
    caps = pcicaps.walk(s.dump(), [(0x1FEB00000, 0x1FEB0FFFF, 0x200), (0, 0, 0)])
    by_type = {c["type_name"]: c for c in caps["virtio"]}
    assert caps["bars"][0]["kind"] == "mem64" and caps["bars"][0]["address"] == 0x1FEB00000
    assert caps["bars"][1]["kind"] == "mem64-upper"
    assert by_type["notify"]["notify_off_multiplier"] == 4
    assert by_type["shared_memory"]["offset64"] == (1 << 32) | 0x8000
    assert by_type["vendor"]["vendor_id"] == 0x8086 and "bar" not in by_type["vendor"]
    assert by_type["unknown"]["cfg_type"] == 7
    assert caps["errors"] == []


def test_a_looping_list_and_a_bad_pointer_are_reported_not_followed():
    s = Space()
    s.virtio(0x40, 1, 0, 0, 0x1000)
    s.put(0x41, 0x40, 1)  # points back at itself
    caps = pcicaps.walk(s.dump())
    assert len(caps["virtio"]) == 1
    assert any("loops" in e for e in caps["errors"])
    s.put(0x41, 0x22, 1)  # into the header, low bits set
    caps = pcicaps.walk(s.dump())
    assert any("reserved low bits" in e for e in caps["errors"])
    assert any("outside" in e for e in caps["errors"])


def test_a_cap_len_shorter_than_the_fields_reads_only_what_it_claims():
    s = Space()
    s.virtio(0x40, 2, 4, 0x3000, 0x1000, cap_len=16, extra=(4).to_bytes(4, "little"))
    cap = pcicaps.walk(s.dump())["virtio"][0]
    assert cap["cap_len"] == 16 and "notify_off_multiplier" not in cap
    assert len(cap["raw"]) == 32


def test_the_legacy_mmr_proposal_vsec_is_found_in_extended_space():
    s = Space(size=4096)
    s.virtio(0x40, 1, 0, 0, 0x1000)
    s.put(0x100, regs.PCI_EXT_CAP_ID_VNDR | (1 << 16) | (0 << 20), 4)
    s.put(0x104, 0x1AF4 | (1 << 16) | (20 << 20), 4)
    s.put(0x108, regs.VIRTIO_PCI_CAP_LEGACY_MMR, 1)
    s.put(0x109, 2, 1)
    s.put(0x10C, 0x2000, 4)
    s.put(0x110, 0x1000, 4)
    caps = pcicaps.walk(s.dump())
    assert caps["legacy_mmr"] == [{"at": 0x100, "cfg_type": 10, "bar": 2, "offset": 0x2000,
                                   "length": 0x1000, "vsec_len": 20}]


def test_no_extended_space_means_no_extended_walk():
    caps = pcicaps.walk(Space(size=256).dump())
    assert caps["extended"] == [] and caps["legacy_mmr"] == []
