"""virtio-mmio register access through /dev/mem, width-exact.

QEMU (and real hardware) may reject byte-wise access to the 32-bit registers, so every
access is one aligned load or store of the register's own width via ctypes on the
mapping, never a byte copy.
"""

import ctypes
import mmap
import os

from . import regs

_WIDTH_TYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32}


class MmioWindow:
    def __init__(self, base, size=0x200):
        page = mmap.PAGESIZE
        self.base = base
        self._page_base = base & ~(page - 1)
        self._delta = base - self._page_base
        length = ((self._delta + size + page - 1) // page) * page
        fd = os.open("/dev/mem", os.O_RDWR | os.O_SYNC)
        try:
            self._map = mmap.mmap(fd, length, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=self._page_base)
        finally:
            os.close(fd)
        self.trace = []  # every access, for evidence: (op, offset, width, value)

    def read(self, offset, width=4):
        value = _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value
        self.trace.append(("r", offset, width, value))
        return value

    def write(self, offset, value, width=4):
        _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value = value
        self.trace.append(("w", offset, width, value))

    def reg(self, name):
        return self.read(regs.MMIO[name])

    def set_reg(self, name, value):
        self.write(regs.MMIO[name], value)

    def close(self):
        self._map.close()
