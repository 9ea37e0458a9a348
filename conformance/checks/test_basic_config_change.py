"""Configuration changes made from the host: generation counter, new values, the cause.

The probe brings the device up (to DRIVER_OK, or just short of it) and leaves it
running; the host changes the device's configuration over QMP (set_link on a network
device, block_resize on a block device, a balloon target); the probe then reads the
interrupt cause, the generation counter and the configuration again.

Clauses: the transports' generation-counter rules (Virtio Over MMIO's ConfigGeneration,
Virtio Over PCI's config_generation) and the block device's capacity-change notification.
On the legacy interfaces there is no generation counter to judge.
"""

import pytest

from conformance.errors import NotApplicable

MMIO = "transport/mmio/mmio-device-register-layout"
MMIO_GEN_NEW = f"{MMIO}/6"
MMIO_GEN_TOKEN = f"{MMIO}/reg-configgeneration-1"
MMIO_GEN_STABLE = f"{MMIO}/reg-configgeneration-2"
PCI_GEN = "transport/pci/common-configuration-structure-layout/6"
BLK_NOTIFY = "device/blk/device-operation/2"
CLAUSES = (MMIO_GEN_NEW, MMIO_GEN_TOKEN, MMIO_GEN_STABLE, PCI_GEN, BLK_NOTIFY)

# The QEMU device families whose configuration the host can change, and how.
LEVERS = {"virtio-net": "set_link", "virtio-blk": "block_resize",
          "virtio-balloon": "balloon"}


def _le(values, start, width):
    return int.from_bytes(bytes(values[start:start + width]), "little")


def _change(dut, arm):
    """Make the host-side change (nothing to do when replaying a recording)."""
    guest = dut.guest
    if guest is None:
        return "replayed"
    device = guest.device(dut.profile.name)
    lever = LEVERS[dut.profile.device]
    config = arm["config"]
    if lever == "set_link":
        up = not (_le(config, 6, 2) & 1)  # status.LINK_UP, after the 6-byte mac
        guest.set_link(device, up)
        return f"set_link {device.id} up={up}"
    if lever == "block_resize":
        size = _le(config, 0, 8) * 512 + (1 << 20)  # capacity in 512-byte sectors
        guest.block_resize(device, size)
        return f"block_resize {device.id}-disk {size}"
    pages = 256 if _le(config, 0, 4) != 256 else 512  # num_pages
    target = (guest.definition.memory_mb << 20) - pages * 4096
    guest.balloon(target)
    return f"balloon {target} (num_pages {pages})"


def _restore(dut):
    if dut.guest is not None and LEVERS[dut.profile.device] == "set_link":
        dut.guest.set_link(dut.guest.device(dut.profile.name), True)


def _config_change(dut, judge, driver_ok):
    if dut.profile.device not in LEVERS:
        raise NotApplicable(f"the host has no lever on the configuration of "
                            f"{dut.profile.device} ({', '.join(LEVERS)} have one)")
    args = {"transport": dut.transport, "virtio_id": dut.profile.virtio_id}
    arm = dut.probe("vq_config_arm", driver_ok=driver_ok, **args)
    try:
        action = _change(dut, arm)
        seen = dut.probe("vq_config_observe", driver_ok=driver_ok, **args)
    finally:
        _restore(dut)
    when = "after DRIVER_OK" if driver_ok else "before DRIVER_OK (FEATURES_OK set)"
    changed = seen["config"] != arm["config"]
    observed = {"config_before": arm["config"], "config_after": seen["config"],
                "generation_before": arm["generation_after_read"],
                "generation_after": seen["generation"], "config_interrupt":
                seen["config_interrupt"], "status": seen["status"]}
    detail = f"host: {action}; probe: " + "; ".join(arm.get("trace", [])[-25:])
    gen_clauses = ((MMIO_GEN_NEW, MMIO_GEN_TOKEN) if dut.transport == "mmio" else
                   (PCI_GEN,) if dut.transport == "pci" else ())
    for clause in (MMIO_GEN_NEW, MMIO_GEN_TOKEN, PCI_GEN):
        if clause not in gen_clauses:
            judge.na(clause, f"{dut.transport} is driven through an interface without "
                             "this generation counter")
        elif not changed:
            judge.na(clause, f"the configuration did not change after the host's {action}")
        else:
            judge.check(clause, seen["generation"] != arm["generation_after_read"],
                        what=f"generation counter across a host-side configuration change "
                             f"made {when}", observed=observed,
                        expected="a different generation value", detail=detail)
    if dut.transport == "mmio":
        judge.check(MMIO_GEN_STABLE, arm["generation"] == arm["generation_after_read"]
                    and seen["generation"] == seen["generation_after_read"],
                    what="ConfigGeneration read around a configuration read with no change",
                    observed=[arm["generation"], arm["generation_after_read"],
                              seen["generation"], seen["generation_after_read"]],
                    expected="pairs equal", detail=detail)
    else:
        judge.na(MMIO_GEN_STABLE, "an MMIO Version 2 register")
    if dut.profile.device == "virtio-blk" and driver_ok and changed:
        judge.check(BLK_NOTIFY, seen["config_interrupt"],
                    what="configuration change notification after a capacity change "
                         "(DRIVER_OK set)", observed=observed,
                    expected="configuration change interrupt", detail=detail)
    else:
        judge.na(BLK_NOTIFY, "judged on a block device whose capacity changed after "
                             "DRIVER_OK")


@pytest.mark.clause(*CLAUSES)
def test_config_change_after_driver_ok(dut, judge):
    _config_change(dut, judge, driver_ok=True)


@pytest.mark.clause(*CLAUSES)
def test_config_change_before_driver_ok(dut, judge):
    _config_change(dut, judge, driver_ok=False)
