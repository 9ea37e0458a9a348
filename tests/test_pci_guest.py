"""The capability walk against ``lspci -vvv`` on a real q35 guest (one short boot).

Marked ``guest``.  Two layouts: a transitional virtio-net with modern-pio-notify=on (two
notification capabilities, one in an I/O BAR) and a non-default virtio-blk layout.
"""

import json
import re
import shlex

import pytest

from conformance.machine.accel import choose_accelerator
from conformance.machine.guest import Guest, GuestConfig
from conformance.machine.qemu import find_qemu
from conformance.machine.ssh import new_keypair
from conformance.paths import PROBE_GUEST_DIR, PROBE_UNPACK, probe_archive
from conformance.profiles import resolve_profile

pytestmark = pytest.mark.guest

LSPCI_NAMES = {"CommonCfg": "common", "Notify": "notify", "ISR": "isr",
               "DeviceCfg": "device", "<unknown>": "other"}


def _push_probe(guest):
    guest.run(PROBE_UNPACK, input=probe_archive(), check=True, timeout=60)


def parse_lspci(text):
    """Virtio vendor capabilities and MSI-X as lspci decodes them, by config offset."""
    caps, msix = {}, None
    blocks = re.split(r"\n\tCapabilities: ", text)
    for block in blocks[1:]:
        head = re.match(r"\[([0-9a-f]+)\] (.*)", block)
        at = int(head.group(1), 16)
        if "VirtIO:" in head.group(2):
            name = head.group(2).split("VirtIO: ")[1].strip()
            fields = dict(re.findall(r"(BAR|offset|size|multiplier)=([0-9a-f]+)", block))
            caps[at] = {"type": LSPCI_NAMES.get(name, name),
                        **{k: int(v, 16) for k, v in fields.items()}}
        elif head.group(2).startswith("MSI-X"):
            count = int(re.search(r"Count=(\d+)", block).group(1))
            table = re.search(r"Vector table: BAR=(\d) offset=([0-9a-f]+)", block)
            pba = re.search(r"PBA: BAR=(\d) offset=([0-9a-f]+)", block)
            msix = {"at": at, "count": count, "table": (int(table.group(1)),
                                                         int(table.group(2), 16)),
                    "pba": (int(pba.group(1)), int(pba.group(2), 16))}
    return caps, msix


def test_capability_walk_matches_lspci(tmp_path):
    from conformance.images.builder import build_image

    image = build_image()
    accel = choose_accelerator(find_qemu(), image.kernel, image.initrd,
                               image.digest).accelerator
    key, pub = new_keypair()
    profiles = [resolve_profile("virtio-net-modern-pio-notify"),
                resolve_profile("virtio-blk-page-per-vq")]
    config = GuestConfig(variant="pci-transitional", profiles=profiles, kernel=image.kernel,
                         initrd=image.initrd, workdir=tmp_path, qemu=find_qemu(),
                         accelerator=accel, ssh_key=key, ssh_pubkey=pub)
    with Guest(config) as guest:
        _push_probe(guest)
        for dut in guest.devices:
            address = dut.location.pci_address
            args = json.dumps({"location": dut.location.to_json()})
            walk = json.loads(guest.run(f"cd {PROBE_GUEST_DIR} && python3 -m vcprobe pci_caps "
                                        f"{shlex.quote(args)}", check=True).stdout)["caps"]
            listing = guest.run(f"lspci -vvv -s {address}", check=True).stdout
            caps, msix = parse_lspci(listing)
            ours = {c["at"]: c for c in walk["virtio"]}
            assert set(ours) == set(caps), listing
            for at, theirs in caps.items():
                mine = ours[at]
                if theirs["type"] != "other":
                    assert mine["type_name"] == theirs["type"], (at, listing)
                if "BAR" in theirs and theirs["type"] != "other":
                    assert (mine["bar"], mine["offset"], mine["length"]) == \
                        (theirs["BAR"], theirs["offset"], theirs["size"]), (at, listing)
                if "multiplier" in theirs:
                    assert mine["notify_off_multiplier"] == theirs["multiplier"]
            assert msix is not None and walk["msix"]["at"] == msix["at"]
            assert walk["msix"]["table_size"] == msix["count"]
            assert (walk["msix"]["table_bar"], walk["msix"]["table_offset"]) == msix["table"]
            assert (walk["msix"]["pba_bar"], walk["msix"]["pba_offset"]) == msix["pba"]
