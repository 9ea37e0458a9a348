"""virtio-pci access through sysfs: the config file and the resourceN files.

Every access is one load or store of exactly the width asked for (a device may reject
or misread a byte-wise copy of a wider register), and every access is traced as
``(op, where, width, value)`` with ``where`` like ``cfg+0x006`` or ``bar4+0x0014``, so
a check can show the exact access behind each observation.
"""

import ctypes
import mmap
import os
import struct

from . import regs

SYSFS_PCI = "/sys/bus/pci/devices"
IORESOURCE_IO = 0x100
IORESOURCE_MEM = 0x200

_WIDTH_TYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}


def where_cfg(offset):
    return f"cfg+0x{offset:03x}"


def where_bar(bar, offset):
    return f"bar{bar}+0x{offset:04x}"


def format_trace(trace, limit=None):
    """A compact text of accesses: ``r bar4+0x0014.1=0x0 w cfg+0x004.2=0x407``."""
    items = trace if limit is None else trace[-limit:]
    return " ".join(f"{op} {where}.{width}=0x{value:x}"
                    for op, where, width, value in items)


class BarWindow:
    """One BAR of a function: memory BARs mapped, I/O BARs through pread/pwrite."""

    def __init__(self, function, index, start, size, is_io):
        self.function = function
        self.index = index
        self.start = start
        self.size = size
        self.is_io = is_io
        self._fd = None
        self._map = None
        self._delta = 0
        path = os.path.join(function.path, f"resource{index}")
        if is_io:
            self._fd = os.open(path, os.O_RDWR)
            return
        page = mmap.PAGESIZE
        if start % page == 0:
            fd = os.open(path, os.O_RDWR | os.O_SYNC)
            offset = 0
        else:
            # sysfs maps whole pages from the page holding the BAR start and drops the
            # start's offset within that page: a sub-page BAR goes through /dev/mem.
            fd = os.open("/dev/mem", os.O_RDWR | os.O_SYNC)
            offset = start & ~(page - 1)
            self._delta = start - offset
        length = ((self._delta + size + page - 1) // page) * page
        try:
            self._map = mmap.mmap(fd, length, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
        finally:
            os.close(fd)

    def _check(self, offset, width):
        if width not in _WIDTH_TYPES:
            raise ValueError(f"access width {width}")
        if offset < 0 or offset + width > self.size:
            raise ValueError(f"bar{self.index}+0x{offset:x} (width {width}) is outside the "
                             f"BAR (size 0x{self.size:x})")

    def read(self, offset, width):
        self._check(offset, width)
        if self.is_io:
            data = os.pread(self._fd, width, offset)
            if len(data) != width:
                raise OSError(f"short I/O read at bar{self.index}+0x{offset:x}")
            value = int.from_bytes(data, "little")
        else:
            value = _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value
        self.function.trace.append(("r", where_bar(self.index, offset), width, value))
        return value

    def write(self, offset, value, width):
        self._check(offset, width)
        if self.is_io:
            os.pwrite(self._fd, value.to_bytes(width, "little"), offset)
        else:
            _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value = value
        self.function.trace.append(("w", where_bar(self.index, offset), width, value))

    def close(self):
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class PciFunction:
    def __init__(self, address):
        self.address = address
        self.path = os.path.join(SYSFS_PCI, address)
        if not os.path.isdir(self.path):
            raise FileNotFoundError(f"no PCI function {address} in sysfs")
        self.trace = []
        self._cfg_fd = None
        self._bars = {}

    # ---- configuration space
    def _cfg(self):
        if self._cfg_fd is None:
            self._cfg_fd = os.open(os.path.join(self.path, "config"), os.O_RDWR)
        return self._cfg_fd

    def config_size(self):
        """256 for conventional PCI, 4096 with PCIe extended configuration space."""
        return os.fstat(self._cfg()).st_size

    def config_read(self, offset, width):
        data = os.pread(self._cfg(), width, offset)
        if len(data) != width:
            raise OSError(f"short config read at 0x{offset:x}")
        value = int.from_bytes(data, "little")
        self.trace.append(("r", where_cfg(offset), width, value))
        return value

    def config_write(self, offset, value, width):
        os.pwrite(self._cfg(), value.to_bytes(width, "little"), offset)
        self.trace.append(("w", where_cfg(offset), width, value))

    def config_dump(self):
        """The whole configuration space as hex (untraced: a snapshot for evidence)."""
        return os.pread(self._cfg(), self.config_size(), 0).hex()

    # ---- driver binding and ownership
    def driver(self):
        link = os.path.join(self.path, "driver")
        return os.path.basename(os.readlink(link)) if os.path.islink(link) else None

    def unbind(self):
        drv = self.driver()
        if drv:
            with open(os.path.join(self.path, "driver", "unbind"), "w") as f:
                f.write(self.address)
        return drv

    def take_ownership(self):
        """Make the function usable by the probe; returns the Command value before.

        Decoding and bus mastering are switched on (rings and MSI-X messages are DMA).
        INTx is disabled and stays so: no Linux driver handles this function, so an
        asserted line would be an interrupt nobody claims; Status.Interrupt still shows
        the device's INTx state.
        """
        if self.driver():
            raise RuntimeError(f"{self.address} is bound to driver {self.driver()}; the probe needs it unbound")
        with open(os.path.join(self.path, "enable")) as f:
            enabled = f.read().strip() != "0"
        if not enabled:
            with open(os.path.join(self.path, "enable"), "w") as f:
                f.write("1")
        bits = regs.PCI_COMMAND_BITS
        before = self.config_read(regs.PCI_CFG["Command"], 2)
        wanted = (before | bits["IO"] | bits["MEMORY"] | bits["BUS_MASTER"]
                  | bits["INTX_DISABLE"])
        if wanted != before:
            self.config_write(regs.PCI_CFG["Command"], wanted, 2)
        return before

    # ---- BARs
    def resources(self):
        """sysfs ``resource``: per BAR (and ROM, bridges) a (start, end, flags) triple."""
        rows = []
        with open(os.path.join(self.path, "resource")) as f:
            for line in f:
                start, end, flags = (int(x, 16) for x in line.split())
                rows.append((start, end, flags))
        return rows

    def bar_size(self, index):
        start, end, _flags = self.resources()[index]
        return end - start + 1 if end else 0

    def bar(self, index):
        """A traced window on BAR ``index`` (mapped once, kept until close)."""
        if index not in self._bars:
            start, end, flags = self.resources()[index]
            if not end:
                raise ValueError(f"{self.address} has no BAR {index}")
            self._bars[index] = BarWindow(self, index, start, end - start + 1,
                                          bool(flags & IORESOURCE_IO))
        return self._bars[index]

    def close(self):
        for window in self._bars.values():
            window.close()
        self._bars = {}
        if self._cfg_fd is not None:
            os.close(self._cfg_fd)
            self._cfg_fd = None


def u16(data, off):
    return struct.unpack_from("<H", data, off)[0]
