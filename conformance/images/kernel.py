"""The kernel side of the image: a PVH-bootable vmlinux and a closed set of modules.

QEMU can start an uncompressed ELF vmlinux through its Xen PVH entry note on both microvm
and q35, which skips the bzImage's own decompressor (slow under TCG).  Debian ships only
the bzImage, so the ELF is taken out of its payload.

Debian's kernel package carries no modules.dep (its postinst runs depmod), so the module
dependencies come from each module's ``.modinfo`` and the builder writes modules.dep and
modules.alias for the modules it keeps, in the format busybox modprobe reads.
"""

from __future__ import annotations

import gzip
import lzma
import struct
from dataclasses import dataclass, field
from pathlib import Path

from conformance.errors import ImageBuildError
from conformance.images import elf
from conformance.images.recipe import module_key

# x86 boot protocol (Documentation/arch/x86/boot.rst): offsets in the bzImage's setup header.
_SETUP_SECTS = 0x1F1
_HEADER_MAGIC = 0x202
_PROTOCOL_VERSION = 0x206
_PAYLOAD_OFFSET = 0x248   # payload_offset, payload_length: protocol 2.08 and later

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_LZMA_MAGIC = b"\x5d\x00\x00"


def bzimage_payload(image: bytes) -> bytes:
    """The compressed kernel ELF inside a bzImage (still compressed)."""
    if len(image) < 0x250 or image[_HEADER_MAGIC:_HEADER_MAGIC + 4] != b"HdrS":
        raise ImageBuildError("the kernel file is not a bzImage (no HdrS setup header)")
    protocol = struct.unpack_from("<H", image, _PROTOCOL_VERSION)[0]
    if protocol < 0x208:
        raise ImageBuildError(f"bzImage boot protocol {protocol:#x} is too old to locate "
                              "the payload (needs 2.08+)")
    setup_sects = image[_SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", image, _PAYLOAD_OFFSET)
    start = (setup_sects + 1) * 512 + offset
    payload = image[start:start + length]
    if len(payload) != length:
        raise ImageBuildError("bzImage is truncated (payload runs past the end of the file)")
    return payload


def decompress_payload(payload: bytes) -> bytes:
    if payload.startswith(_XZ_MAGIC):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(_GZIP_MAGIC):
        return gzip.decompress(payload)
    if payload.startswith(_LZMA_MAGIC):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    if payload.startswith(elf.ELF_MAGIC):
        return payload
    raise ImageBuildError(f"bzImage payload compression not supported (magic "
                          f"{payload[:6].hex()}); only xz, gzip and lzma are")


def extract_vmlinux(bzimage: Path, destination: Path) -> int:
    """Writes the kernel ELF to ``destination``; returns its PVH entry address."""
    vmlinux = decompress_payload(bzimage_payload(bzimage.read_bytes()))
    if not vmlinux.startswith(elf.ELF_MAGIC):
        raise ImageBuildError(f"{bzimage.name}: the decompressed payload is not an ELF file")
    destination.write_bytes(vmlinux)
    entry = elf.pvh_entry(destination)
    if entry is None:
        raise ImageBuildError(
            f"{bzimage.name}: the kernel has no Xen PVH entry note "
            f"(XEN_ELFNOTE_PHYS32_ENTRY); QEMU cannot boot it as an ELF. Use a kernel "
            "built with CONFIG_PVH=y.")
    return entry


@dataclass
class Module:
    name: str          # canonical (underscores)
    path: str          # relative to the modules directory, e.g. kernel/drivers/net/virtio_net.ko
    depends: list[str] = field(default_factory=list)
    softdeps: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


class ModuleTree:
    """The modules a kernel package ships, under ``<root>/lib/modules/<version>``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.version = directory.name
        self._paths: dict[str, Path] = {}
        for ko in sorted(directory.rglob("*.ko")):
            self._paths.setdefault(module_key(ko.name[:-3]), ko)
        self.builtin: set[str] = set()
        builtin = directory / "modules.builtin"
        if builtin.is_file():
            for line in builtin.read_text().splitlines():
                if line.strip():
                    self.builtin.add(module_key(Path(line.strip()).name.removesuffix(".ko")))
        self._cache: dict[str, Module] = {}

    @classmethod
    def find(cls, root: Path) -> ModuleTree:
        """The single modules directory in an unpacked kernel package."""
        candidates = [d for base in (root / "lib" / "modules", root / "usr" / "lib" / "modules")
                      if base.is_dir() for d in base.iterdir() if d.is_dir()]
        if len(candidates) != 1:
            raise ImageBuildError(f"expected one modules directory in the kernel package, "
                                  f"found {[c.name for c in candidates]}")
        return cls(candidates[0])

    def module(self, name: str) -> Module:
        key = module_key(name)
        if key not in self._cache:
            path = self._paths.get(key)
            if path is None:
                raise KeyError(key)
            info = elf.modinfo(path)
            depends = [module_key(d) for v in info.get("depends", []) for d in v.split(",") if d]
            softdeps = []
            for value in info.get("softdep", []):
                softdeps += [module_key(w) for w in value.split() if not w.endswith(":")]
            self._cache[key] = Module(key, path.relative_to(self.directory).as_posix(),
                                      depends, softdeps, info.get("alias", []))
        return self._cache[key]

    def closure(self, names: list[str] | tuple[str, ...]) -> tuple[list[Module], list[str]]:
        """Modules to ship, dependencies before dependants; and the names that are built in.

        Hard dependencies must be present; soft ones come along when the package has them.
        """
        order: list[Module] = []
        seen: set[str] = set()
        builtin: list[str] = []

        def visit(key: str, wanted_by: str | None, soft: bool) -> None:
            if key in seen:
                return
            if key not in self._paths:
                if key in self.builtin:
                    seen.add(key)
                    if wanted_by is None:
                        builtin.append(key)
                    return
                if soft:
                    return
                needer = f" (needed by {wanted_by})" if wanted_by else ""
                raise ImageBuildError(
                    f"kernel module {key}{needer} is neither in linux-image package "
                    f"{self.version} nor built into it; fix the name in [kernel] modules of "
                    "the recipe (module names are the .ko file names)")
            seen.add(key)
            module = self.module(key)
            for dep in module.depends:
                visit(dep, key, False)
            for dep in module.softdeps:
                visit(dep, key, True)
            order.append(module)

        for name in names:
            visit(module_key(name), None, False)
        return order, builtin

    def dependencies_in_modprobe_order(self, module: Module) -> list[Module]:
        """The transitive hard dependencies, listed the way depmod lists them.

        depmod writes a module's dependencies so that the last one is loaded first;
        busybox modprobe walks the list from the end.
        """
        load_order: list[Module] = []
        seen: set[str] = set()

        def visit(key: str) -> None:
            if key in seen or key not in self._paths:
                return
            seen.add(key)
            for dep in self.module(key).depends:
                visit(dep)
            load_order.append(self.module(key))

        visit(module.name)
        return [m for m in reversed(load_order) if m.name != module.name]


def modules_dep(tree: ModuleTree, modules: list[Module]) -> str:
    lines = []
    for module in modules:
        deps = " ".join(d.path for d in tree.dependencies_in_modprobe_order(module))
        lines.append(f"{module.path}:{' ' + deps if deps else ''}")
    return "\n".join(lines) + "\n"


def modules_alias(modules: list[Module]) -> str:
    lines = [f"alias {alias} {module.name}" for module in modules for alias in module.aliases]
    return "# Aliases of the modules in this image (written by the image builder).\n" + \
        "\n".join(lines) + "\n"
