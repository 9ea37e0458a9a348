"""The four transport variants, named the same everywhere (CLI, profiles, results)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError


@dataclass(frozen=True)
class Variant:
    name: str
    machine: str  # "microvm" | "q35"
    bus: str  # "mmio" | "pci"
    legacy: bool  # the device shows a legacy (pre-1.0) interface
    modern: bool  # the device shows the virtio 1.x interface
    description: str


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("mmio", "microvm", "mmio", legacy=False, modern=True,
                description="microvm, virtio-mmio Version 2"),
        Variant("mmio-legacy", "microvm", "mmio", legacy=True, modern=False,
                description="microvm, virtio-mmio Version 1 (legacy)"),
        Variant("pci", "q35", "pci", legacy=False, modern=True,
                description="q35, non-transitional virtio-pci (disable-legacy=on)"),
        Variant("pci-transitional", "q35", "pci", legacy=True, modern=True,
                description="q35, transitional virtio-pci (legacy I/O BAR0 + modern capabilities)"),
    )
}

ALL_VARIANTS: tuple[str, ...] = tuple(VARIANTS)
MACHINES: tuple[str, ...] = ("microvm", "q35")


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(
            f"unknown transport {name!r}; choose one of: {', '.join(ALL_VARIANTS)}"
        ) from None
