"""The few things the builder reads from ELF files: library needs, PVH notes, modinfo."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

ELF_MAGIC = b"\x7fELF"

# Xen's ELF note numbering (public/elfnote.h); the kernel's PVH entry point is announced
# with this one, which is what lets QEMU start a vmlinux directly (-kernel on microvm/q35).
XEN_ELFNOTE_PHYS32_ENTRY = 18


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


@dataclass
class DynamicInfo:
    """What the dynamic loader will look for when this file is loaded."""

    needed: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)   # DT_RUNPATH, else DT_RPATH
    interpreter: str | None = None                     # PT_INTERP (executables)


# pyelftools hands a string tag's value out as an attribute named after the tag.
_STRING_TAGS = {"DT_NEEDED": "needed", "DT_RUNPATH": "runpath", "DT_RPATH": "rpath"}


def dynamic_info(path: Path) -> DynamicInfo:
    info = DynamicInfo()
    rpath: list[str] = []
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for segment in elf.iter_segments():
                if isinstance(segment, InterpSegment):
                    info.interpreter = segment.get_interp_name()
                elif isinstance(segment, DynamicSegment):
                    for tag in segment.iter_tags():
                        attribute = _STRING_TAGS.get(tag.entry.d_tag)
                        if attribute is None:
                            continue
                        value = str(getattr(tag, attribute))
                        if attribute == "needed":
                            info.needed.append(value)
                        elif attribute == "runpath":
                            info.runpath += [p for p in value.split(":") if p]
                        else:
                            rpath += [p for p in value.split(":") if p]
    except (ELFError, struct.error) as exc:
        raise ValueError(f"{path}: not a readable ELF file ({exc})") from exc
    if not info.runpath:
        info.runpath = rpath
    return info


def iter_notes(data: bytes):
    """Yields (name, type, desc) from the raw bytes of a note segment or section."""
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, kind = struct.unpack_from("<III", data, pos)
        pos += 12
        name = data[pos:pos + namesz].rstrip(b"\0").decode("ascii", "replace")
        pos += (namesz + 3) & ~3
        desc = data[pos:pos + descsz]
        pos += (descsz + 3) & ~3
        yield name, kind, desc


def xen_notes(path: Path) -> dict[int, bytes]:
    """Every ``Xen`` note of an ELF file, by note type."""
    notes: dict[int, bytes] = {}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for segment in elf.iter_segments():
            if segment["p_type"] != "PT_NOTE":
                continue
            for name, kind, desc in iter_notes(segment.data()):
                if name == "Xen":
                    notes[kind] = desc
    return notes


def pvh_entry(path: Path) -> int | None:
    """The 32-bit PVH entry address a kernel announces, or None if it has none."""
    desc = xen_notes(path).get(XEN_ELFNOTE_PHYS32_ENTRY)
    if desc is None or len(desc) < 4:
        return None
    return struct.unpack_from("<Q" if len(desc) >= 8 else "<I", desc)[0]


def modinfo(path: Path) -> dict[str, list[str]]:
    """A kernel module's ``.modinfo`` section: key -> values (keys such as alias repeat)."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        section = elf.get_section_by_name(".modinfo")
        if section is None:
            raise ValueError(f"{path}: no .modinfo section (not a kernel module?)")
        raw = section.data()
    info: dict[str, list[str]] = {}
    for item in raw.split(b"\0"):
        if b"=" not in item:
            continue
        key, _, value = item.decode("utf-8", "replace").partition("=")
        info.setdefault(key, []).append(value)
    return info
