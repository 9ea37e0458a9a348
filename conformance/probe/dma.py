"""Guest-physical memory the probe owns, for rings and buffers.

The guest kernel boots with ``mem=`` below the machine's RAM size, so the RAM above it
is never used by Linux.  The harness says where it is on the kernel command line
(``vc.dma=<base>:<size>``); the probe maps it through /dev/mem.
"""

import ctypes
import mmap
import os


def dma_region():
    """(base, size) of the probe's memory, from the kernel command line."""
    with open("/proc/cmdline") as f:
        for word in f.read().split():
            if word.startswith("vc.dma="):
                base, size = word[len("vc.dma="):].split(":")
                return int(base, 16), int(size, 16)
    raise RuntimeError("kernel command line has no vc.dma= region")


class DmaMemory:
    """A mapping of the DMA region with a bump allocator and width-exact access."""

    def __init__(self):
        self.base, self.size = dma_region()
        fd = os.open("/dev/mem", os.O_RDWR | os.O_SYNC)
        try:
            self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=self.base)
        finally:
            os.close(fd)
        self._next = 0

    def alloc(self, length, align=4096):
        """A zeroed block; returns its guest-physical address."""
        start = (self._next + align - 1) // align * align
        if start + length > self.size:
            raise MemoryError(f"probe DMA region exhausted ({self.size} bytes)")
        self._next = start + length
        self._map[start:start + length] = bytes(length)
        return self.base + start

    def _off(self, addr, length):
        off = addr - self.base
        if off < 0 or off + length > self.size:
            raise ValueError(f"0x{addr:x} is outside the probe's DMA region")
        return off

    def read(self, addr, length):
        off = self._off(addr, length)
        return bytes(self._map[off:off + length])

    def write(self, addr, data):
        off = self._off(addr, len(data))
        self._map[off:off + len(data)] = data

    def load(self, addr, width):
        t = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}[width]
        return t.from_buffer(self._map, self._off(addr, width)).value

    def store(self, addr, value, width):
        t = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32, 8: ctypes.c_uint64}[width]
        t.from_buffer(self._map, self._off(addr, width)).value = value

    def close(self):
        self._map.close()
