"""Where devices go and what QEMU command line a guest gets (no QEMU started)."""

from pathlib import Path

import pytest

from conformance.errors import ConfigError
from conformance.machine.guest import Guest, GuestConfig
from conformance.machine.layout import definition_for_variant
from conformance.profiles import resolve_profile


def _guest(tmp_path, variant, names):
    return Guest(GuestConfig(variant=variant, profiles=[resolve_profile(n) for n in names],
                             kernel=Path("/k"), initrd=Path("/i"), workdir=tmp_path,
                             qemu="qemu-system-x86_64", ssh_pubkey="ssh-ed25519:AAAA"))


def test_mmio_devices_count_down_from_below_the_control_nic():
    d = definition_for_variant("mmio")
    assert d.control_location().mmio_base == 0xFEB02E00
    assert d.device_location(0).mmio_base == 0xFEB02C00
    assert d.device_location(0).qemu_bus == "bus=virtio-mmio-bus.22"


def test_pci_devices_get_slots_after_the_control_nic():
    d = definition_for_variant("pci")
    assert d.control_location().pci_address == "0000:00:02.0"
    assert d.device_location(1).pci_address == "0000:00:04.0"


def test_mmio_variant_sets_modern_global_and_legacy_does_not(tmp_path):
    modern = _guest(tmp_path / "a", "mmio", ["virtio-rng"]).build_argv(3, 4, 2222)
    legacy = _guest(tmp_path / "b", "mmio-legacy", ["virtio-rng"]).build_argv(3, 4, 2222)
    assert "virtio-mmio.force-legacy=false" in modern
    assert "virtio-mmio.force-legacy=false" not in legacy


def test_pci_variants_set_legacy_property(tmp_path):
    argv = _guest(tmp_path, "pci", ["virtio-rng"]).build_argv(3, 4, 2222)
    dut = [a for a in argv if a.startswith("virtio-rng-pci")][0]
    assert "id=dut0" in dut and "disable-legacy=on" in dut and "addr=0x3" in dut
    argv = _guest(tmp_path, "pci-transitional", ["virtio-rng"]).build_argv(3, 4, 2222)
    assert "disable-legacy=off" in [a for a in argv if a.startswith("virtio-rng-pci")][0]


def test_child_devices_follow_their_parent(tmp_path):
    argv = _guest(tmp_path, "pci", ["virtio-scsi"]).build_argv(3, 4, 2222)
    parent = next(i for i, a in enumerate(argv) if a.startswith("virtio-scsi-pci"))
    child = next(i for i, a in enumerate(argv) if a.startswith("scsi-hd,bus=dut0.0"))
    assert parent < child


def test_vhost_user_makes_guest_memory_shareable(tmp_path):
    argv = _guest(tmp_path, "pci", ["virtio-rng", "vhost-user-blk"]).build_argv(3, 4, 2222)
    assert any("memory-backend-memfd" in a and "share=on" in a for a in argv)
    assert any(a.startswith("q35,memory-backend=") for a in argv)


def test_kernel_args_carry_the_run_key_and_control_nic(tmp_path):
    g = _guest(tmp_path, "mmio", [])
    args = g.kernel_args()
    assert "vc.authkey=ssh-ed25519:AAAA" in args
    assert "vc.ctlmmio=0xfeb02e00" in args and "iomem=relaxed" in args and "mem=480M" in args
    assert "vc.ctlmod=vmxnet3" in _guest(tmp_path, "pci", []).kernel_args()


def test_reproducer_is_standalone(tmp_path):
    g = _guest(tmp_path, "pci", ["virtio-blk"])
    g.argv = g.build_argv(3, 4, 2222)
    line = g.reproducer()
    assert "fd=3" not in line and "fd=4" not in line
    assert line.endswith("-serial stdio")


def test_mmio_transport_zero_is_never_used():
    # QEMU 7.2 microvm delivered no interrupts for a device on virtio-mmio-bus.0.
    d = definition_for_variant("mmio")
    assert d.device_location(d.max_devices - 1).qemu_bus == "bus=virtio-mmio-bus.1"
    with pytest.raises(ConfigError):
        d.device_location(d.max_devices)


def test_probe_memory_stays_clear_of_the_top_of_ram(tmp_path):
    # q35's firmware keeps ACPI tables just below the top of RAM (e820 reserved there).
    for variant in ("mmio", "pci"):
        args = _guest(tmp_path / variant, variant, []).kernel_args()
        base, size = (int(x, 16) for x in args.split("vc.dma=")[1].split()[0].split(":"))
        assert base == 480 << 20 and base + size <= (512 - 8) << 20
