"""Machine definitions (``fixtures/machines/*.toml``) and where each device goes.

Devices under test are placed explicitly (an MMIO transport or a PCI slot) so the
harness knows, before boot, where the guest will find each one.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache

from ..errors import ConfigError
from ..paths import fixtures_dir
from ..transports import VARIANTS


@dataclass(frozen=True)
class Location:
    """Where a device sits, as the guest sees it."""

    bus: str  # "mmio" | "pci"
    mmio_base: int | None = None
    mmio_size: int | None = None
    pci_address: str | None = None  # "0000:00:03.0"
    qemu_bus: str = ""  # the QEMU bus= / addr= properties that put it there

    def to_json(self) -> dict:
        if self.bus == "mmio":
            assert self.mmio_base is not None
            return {"bus": "mmio", "base": f"0x{self.mmio_base:x}", "size": self.mmio_size}
        return {"bus": "pci", "address": self.pci_address}

    def __str__(self) -> str:
        return f"mmio@0x{self.mmio_base:x}" if self.bus == "mmio" else f"pci@{self.pci_address}"


@dataclass(frozen=True)
class MachineDefinition:
    name: str
    data: dict

    @property
    def machine(self) -> str:
        return self.data["machine"]

    @property
    def memory_mb(self) -> int:
        return int(self.data["memory_mb"])

    @property
    def guest_memory_mb(self) -> int:
        return int(self.data["guest_memory_mb"])

    @property
    def dma_mb(self) -> int:
        """Size of the probe's memory above mem=; it must not reach firmware tables."""
        size = int(self.data.get("dma_mb", 16))
        if self.guest_memory_mb + size > self.memory_mb:
            raise ConfigError(f"{self.name}: dma_mb {size} does not fit above "
                              f"guest_memory_mb {self.guest_memory_mb}")
        return size

    @property
    def max_devices(self) -> int:
        if self.data["bus"] == "mmio":
            # Transport 0 is never used: under QEMU 7.2 microvm a device there got no
            # interrupts at all (seen with virtio-net and virtio-rng).
            return int(self.data["control_transport"]) - 1
        return 32 - int(self.data["first_dut_slot"])

    def control_location(self) -> Location:
        if self.data["bus"] == "mmio":
            n = int(self.data["control_transport"])
            return self._mmio(n)
        slot = int(self.data["control_slot"])
        return Location("pci", pci_address=f"0000:00:{slot:02x}.0",
                        qemu_bus=f"bus=pcie.0,addr=0x{slot:x}")

    def device_location(self, index: int) -> Location:
        """Where the ``index``-th device under test goes (0-based)."""
        if index >= self.max_devices:
            raise ConfigError(f"{self.name} has room for {self.max_devices} devices under test")
        if self.data["bus"] == "mmio":
            return self._mmio(int(self.data["control_transport"]) - 1 - index)
        slot = int(self.data["first_dut_slot"]) + index
        return Location("pci", pci_address=f"0000:00:{slot:02x}.0",
                        qemu_bus=f"bus=pcie.0,addr=0x{slot:x}")

    def _mmio(self, n: int) -> Location:
        base = int(self.data["mmio_base"]) + n * int(self.data["mmio_stride"])
        return Location("mmio", mmio_base=base, mmio_size=int(self.data["mmio_stride"]),
                        qemu_bus=f"bus=virtio-mmio-bus.{n}")

    def variant_globals(self, variant: str) -> list[str]:
        return list(self.data.get("variants", {}).get(variant, {}).get("globals", []))

    def variant_device_properties(self, variant: str) -> dict[str, str]:
        return dict(self.data.get("variants", {}).get(variant, {}).get("device_properties", {}))


@cache
def machine_definition(name: str) -> MachineDefinition:
    path = fixtures_dir() / "machines" / f"{name}.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"machine definition {path}: {e}") from None
    for key in ("machine", "memory_mb", "guest_memory_mb", "bus", "control_nic"):
        if key not in data:
            raise ConfigError(f"machine definition {path}: field '{key}' is missing")
    return MachineDefinition(name, data)


def definition_for_variant(variant: str) -> MachineDefinition:
    return machine_definition(VARIANTS[variant].machine)
