"""The PCI capability walk: BARs, every virtio vendor capability, MSI-X, PCIe VSECs.

Works on any source of configuration space with ``config_read(offset, width)`` and
``config_size()``: a live ``PciFunction`` or a recorded dump (``ConfigDump``), so the
same code is tested offline on recorded dumps.  Nothing here assumes QEMU's layout:
structures may share a BAR or use several, sit in memory or I/O BARs, and capabilities
may come in any order or number.  The walk reports what it finds, raw; judging is the
host's business.
"""

from . import regs

MAX_CAPS = 48  # 192 bytes of capability space hold at most 48 dword-aligned entries
MAX_EXT_CAPS = 960  # (4096 - 256) / 4


class ConfigDump:
    """Configuration space from a recorded hex dump (for offline walks)."""

    def __init__(self, hex_text):
        self.data = bytes.fromhex(hex_text)
        self.trace = []

    def config_size(self):
        return len(self.data)

    def config_read(self, offset, width):
        if offset + width > len(self.data):
            raise ValueError(f"config read at 0x{offset:x} beyond the dump")
        return int.from_bytes(self.data[offset:offset + width], "little")


def decode_bars(cfg, resources=None):
    """The six BAR registers as the function presents them, with sysfs sizes if known.

    Each entry: index, raw register value, kind (io | mem32 | mem64 | mem64-upper |
    mem-reserved | unused), prefetchable, address, size (from ``resources``).
    """
    bars = []
    upper_of = None
    for i in range(6):
        raw = cfg.config_read(regs.PCI_HEADER["BAR0"] + 4 * i, 4)
        entry = {"index": i, "raw": raw, "prefetchable": False, "address": 0}
        if upper_of is not None:
            entry["kind"] = "mem64-upper"
            bars[upper_of]["address"] |= raw << 32
            upper_of = None
        elif raw & 1:
            entry["kind"] = "io"
            entry["address"] = raw & ~0x3
        else:
            mem_type = (raw >> 1) & 3
            entry["prefetchable"] = bool(raw & 8)
            entry["address"] = raw & ~0xF
            if mem_type == 2:
                entry["kind"] = "mem64"
                upper_of = i
            elif mem_type == 0:
                entry["kind"] = "mem32"
            else:
                entry["kind"] = "mem-reserved"
        size = 0
        if resources is not None and i < len(resources):
            start, end, _flags = resources[i]
            size = end - start + 1 if end else 0
        entry["size"] = size
        bars.append(entry)
    for entry in bars:
        if entry["kind"] in ("mem32", "io") and entry["size"] == 0 and entry["raw"] == 0:
            entry["kind"] = "unused"
    return bars


def _field(cfg, at, name):
    off, width = regs.VIRTIO_PCI_CAP[name]
    return cfg.config_read(at + off, width)


def decode_virtio_cap(cfg, at):
    """One virtio vendor capability at config offset ``at``, every field it may carry."""
    cap = {"at": at}
    cap_len = _field(cfg, at, "cap_len")
    cap["cap_len"] = cap_len
    cfg_type = _field(cfg, at, "cfg_type")
    cap["cfg_type"] = cfg_type
    cap["type_name"] = regs.PCI_CAP_TYPES.get(cfg_type, "unknown")
    # Read only bytes the capability claims (cap_len), and never beyond the space.
    end = min(at + max(cap_len, 4), cfg.config_size())
    cap["raw"] = "".join(f"{cfg.config_read(o, 1):02x}" for o in range(at, end))

    def have(name):
        off, width = regs.VIRTIO_PCI_CAP[name]
        return off + width <= cap_len and at + off + width <= cfg.config_size()

    if cfg_type == regs.VIRTIO_PCI_CAP_TYPE["vendor"]:
        if have("vendor_id"):
            cap["vendor_id"] = _field(cfg, at, "vendor_id")
        return cap
    for name in ("bar", "id", "offset", "length"):
        if have(name):
            cap[name] = _field(cfg, at, name)
    if cfg_type == regs.VIRTIO_PCI_CAP_TYPE["notify"] and have("notify_off_multiplier"):
        cap["notify_off_multiplier"] = _field(cfg, at, "notify_off_multiplier")
    if cfg_type == regs.VIRTIO_PCI_CAP_TYPE["shared_memory"]:
        if have("offset_hi") and have("length_hi"):
            cap["offset_hi"] = _field(cfg, at, "offset_hi")
            cap["length_hi"] = _field(cfg, at, "length_hi")
            cap["offset64"] = (cap["offset_hi"] << 32) | cap.get("offset", 0)
            cap["length64"] = (cap["length_hi"] << 32) | cap.get("length", 0)
    if cfg_type == regs.VIRTIO_PCI_CAP_TYPE["pci_cfg"] and have("pci_cfg_data"):
        cap["data_at"] = at + regs.VIRTIO_PCI_CAP["pci_cfg_data"][0]
    return cap


def decode_msix(cfg, at):
    ctrl = cfg.config_read(at + regs.MSIX["MessageControl"], 2)
    table = cfg.config_read(at + regs.MSIX["Table"], 4)
    pba = cfg.config_read(at + regs.MSIX["PBA"], 4)
    return {"at": at, "control": ctrl,
            "table_size": (ctrl & regs.MSIX_CTRL_SIZE_MASK) + 1,
            "enabled": bool(ctrl & regs.MSIX_CTRL_ENABLE),
            "function_masked": bool(ctrl & regs.MSIX_CTRL_MASKALL),
            "table_bar": table & 7, "table_offset": table & ~7,
            "pba_bar": pba & 7, "pba_offset": pba & ~7}


def walk_standard(cfg):
    """Follow the capability list from 0x34 (bounded, loop-safe)."""
    chain, errors, seen = [], [], set()
    status = cfg.config_read(regs.PCI_CFG["Status"], 2)
    if not status & regs.PCI_STATUS_BITS["CAP_LIST"]:
        return chain, ["Status.CapabilitiesList is 0: no capability list"]
    ptr = cfg.config_read(regs.PCI_CFG["CapabilitiesPointer"], 1)
    if ptr & 3:
        errors.append(f"capability pointer 0x{ptr:02x} has its reserved low bits set")
    ptr &= ~3
    while ptr:
        if ptr < 0x40 or ptr > 0xFC:
            errors.append(f"capability pointer 0x{ptr:02x} points outside 0x40..0xfc")
            break
        if ptr in seen:
            errors.append(f"capability list loops back to 0x{ptr:02x}")
            break
        if len(chain) >= MAX_CAPS:
            errors.append(f"more than {MAX_CAPS} capabilities")
            break
        seen.add(ptr)
        cap_id = cfg.config_read(ptr, 1)
        nxt = cfg.config_read(ptr + 1, 1)
        chain.append({"at": ptr, "id": cap_id, "next": nxt})
        if nxt & 3:
            errors.append(f"capability at 0x{ptr:02x}: next pointer 0x{nxt:02x} has reserved low bits")
        ptr = nxt & ~3
    return chain, errors


def walk_extended(cfg):
    """PCIe extended capabilities from 0x100, when the function has that space."""
    caps, errors, seen = [], [], set()
    if cfg.config_size() <= regs.PCI_EXT_CAP_START:
        return caps, errors
    ptr = regs.PCI_EXT_CAP_START
    while ptr:
        if ptr < regs.PCI_EXT_CAP_START or ptr + 4 > cfg.config_size() or ptr & 3:
            errors.append(f"extended capability pointer 0x{ptr:03x} is invalid")
            break
        if ptr in seen or len(caps) >= MAX_EXT_CAPS:
            errors.append(f"extended capability list loops at 0x{ptr:03x}")
            break
        seen.add(ptr)
        header = cfg.config_read(ptr, 4)
        if header in (0, 0xFFFFFFFF):
            break  # no extended capabilities at all
        entry = {"at": ptr, "id": header & 0xFFFF, "version": (header >> 16) & 0xF,
                 "next": header >> 20}
        if entry["id"] == regs.PCI_EXT_CAP_ID_VNDR and ptr + 8 <= cfg.config_size():
            vsec = cfg.config_read(ptr + 4, 4)
            entry.update(vsec_id=vsec & 0xFFFF, vsec_rev=(vsec >> 16) & 0xF,
                         vsec_len=vsec >> 20)
            mmr = decode_legacy_mmr(cfg, ptr, entry["vsec_len"])
            if mmr is not None:
                entry["legacy_mmr"] = mmr
        caps.append(entry)
        ptr = entry["next"]
    return caps, errors


def decode_legacy_mmr(cfg, at, vsec_len):
    """The proposal's legacy memory-mapped register window, if this VSEC is one.

    Its virtio structure follows the 8-byte VSEC header: cfg_type, bar, two pad bytes,
    then 32-bit offset and length.
    """
    if vsec_len < 20 or at + 20 > cfg.config_size():
        return None
    cfg_type = cfg.config_read(at + 8, 1)
    if cfg_type != regs.VIRTIO_PCI_CAP_LEGACY_MMR:
        return None
    return {"at": at, "cfg_type": cfg_type, "bar": cfg.config_read(at + 9, 1),
            "offset": cfg.config_read(at + 12, 4), "length": cfg.config_read(at + 16, 4),
            "vsec_len": vsec_len}


def walk(cfg, resources=None):
    """Everything a virtio-pci driver learns from configuration space, as JSON data."""
    chain, errors = walk_standard(cfg)
    virtio, msix = [], None
    for entry in chain:
        if entry["id"] == regs.PCI_CAP_ID_VNDR:
            virtio.append(decode_virtio_cap(cfg, entry["at"]))
        elif entry["id"] == regs.PCI_CAP_ID_MSIX and msix is None:
            msix = decode_msix(cfg, entry["at"])
    extended, ext_errors = walk_extended(cfg)
    return {
        "config_size": cfg.config_size(),
        "command": cfg.config_read(regs.PCI_CFG["Command"], 2),
        "status": cfg.config_read(regs.PCI_CFG["Status"], 2),
        "bars": decode_bars(cfg, resources),
        "chain": chain,
        "virtio": virtio,
        "msix": msix,
        "extended": extended,
        "legacy_mmr": [e["legacy_mmr"] for e in extended if "legacy_mmr" in e],
        "errors": errors + ext_errors,
    }


def first(caps, type_name, usable=None):
    """The first capability of a type (the spec's preference order), optionally the
    first one ``usable`` accepts."""
    for cap in caps["virtio"] if isinstance(caps, dict) else caps:
        if cap["type_name"] == type_name and (usable is None or usable(cap)):
            return cap
    return None


def region_in_bar(cap, bars, length=None):
    """Whether [offset, offset+length) of ``cap`` lies inside its BAR (sysfs size)."""
    bar = cap.get("bar")
    if bar is None or bar > regs.VIRTIO_PCI_BAR_MAX:
        return False
    size = bars[bar]["size"]
    offset = cap.get("offset64", cap.get("offset", 0))
    n = cap.get("length64", cap.get("length", 0)) if length is None else length
    return bars[bar]["kind"] in ("io", "mem32", "mem64") and offset + n <= size
