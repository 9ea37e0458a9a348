"""virtio-mmio register access through /dev/mem, width-exact, and the MMIO transport.

QEMU (and real hardware) may reject byte-wise access to the 32-bit registers, so every
access is one aligned load or store of the register's own width via ctypes on the
mapping, never a byte copy.

``MmioTransport`` is the in-guest driver's MMIO transport layer (see transport.py): it
speaks the modern register set (Version 2, and the proposal's Version 3 which keeps it)
and the legacy one (Version 1: GuestPageSize, QueueAlign, QueuePFN).
"""

import ctypes
import mmap
import os
import time

from . import regs
from .transport import Transport

_WIDTH_TYPES = {1: ctypes.c_uint8, 2: ctypes.c_uint16, 4: ctypes.c_uint32}

# How long a device may take to show a reset (or a queue reset) as finished.  Generous:
# TCG guests on a loaded host are slow, and a device that never finishes is a finding.
RESET_SECONDS = 5.0


class MmioWindow:
    def __init__(self, base, size=0x200):
        page = mmap.PAGESIZE
        self.base = base
        self.size = size
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

    def _check(self, offset, width):
        # Never stray out of the device's own window: the page is shared with other
        # transports, one of them the NIC that carries SSH.
        if offset < 0 or offset + width > self.size or offset % width:
            raise ValueError(f"access 0x{offset:x}/{width} outside or misaligned in the "
                             f"0x{self.size:x}-byte window")

    def read(self, offset, width=4):
        self._check(offset, width)
        value = _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value
        self.trace.append(("r", offset, width, value))
        return value

    def write(self, offset, value, width=4):
        self._check(offset, width)
        _WIDTH_TYPES[width].from_buffer(self._map, self._delta + offset).value = value
        self.trace.append(("w", offset, width, value))

    def reg(self, name):
        return self.read(regs.MMIO[name])

    def set_reg(self, name, value):
        self.write(regs.MMIO[name], value)

    def mark(self, note):
        """A note in the trace (not an access): where one step of a probe begins."""
        self.trace.append(("#", 0, 0, note))

    def close(self):
        self._map.close()


def legacy_ring_layout(size, base, align):
    """(desc, avail, used) addresses of a legacy split ring placed contiguously at ``base``.

    The descriptor table comes first (16 bytes per entry), then the available ring
    (flags, idx, size entries, used_event); the used ring starts at the next multiple of
    the QueueAlign value the driver wrote.
    """
    desc = base
    avail = desc + 16 * size
    avail_end = avail + 2 * (3 + size)
    used = (avail_end + align - 1) // align * align
    return desc, avail, used


def legacy_ring_bytes(size, align):
    """Bytes a legacy ring of ``size`` entries takes (used ring: flags, idx, ring, avail_event)."""
    _desc, _avail, used = legacy_ring_layout(size, 0, align)
    return used + 6 + 8 * size


class MmioTransport(Transport):
    """The in-guest driver's view of one virtio-mmio device (any register layout)."""

    def __init__(self, base, size=0x200, page_size=4096, queue_align=4096):
        self.win = MmioWindow(base, size)
        self.trace = self.win.trace
        self.version = self.win.reg("Version")
        self.legacy = self.version == 1
        # Legacy only: the page size QueuePFN counts in, and the used ring's alignment.
        self.page_size = page_size
        self.queue_align = queue_align

    @classmethod
    def at(cls, location, **kw):
        """The transport for a probe command's ``location`` argument."""
        if location.get("bus") != "mmio":
            raise ValueError(f"not an MMIO location: {location}")
        return cls(int(location["base"], 16), location.get("size") or 0x200, **kw)

    # -- plain register access (names from regs.MMIO)
    def reg(self, name):
        return self.win.reg(name)

    def set_reg(self, name, value):
        self.win.set_reg(name, value)

    def select_queue(self, index):
        self.win.set_reg("QueueSel", index)

    # -- device status and reset
    def reset(self):
        """Write 0 to Status and wait, bounded, until it reads 0; returns the last value."""
        self.win.set_reg("Status", 0)
        return self.wait_status_zero()

    def wait_status_zero(self, seconds=RESET_SECONDS):
        deadline = time.monotonic() + seconds
        while True:
            status = self.win.reg("Status")
            if status == 0 or time.monotonic() > deadline:
                return status
            time.sleep(0.001)

    def get_status(self):
        return self.win.reg("Status")

    def set_status(self, value):
        self.win.set_reg("Status", value)

    # -- features
    def feature_bank(self, bank):
        self.win.set_reg("DeviceFeaturesSel", bank)
        return self.win.reg("DeviceFeatures")

    def device_features(self):
        # Modern: bits 0-63 (banks 0 and 1).  Legacy features are 32 bits, but reading
        # bank 1 there is harmless and shows a device that puts something in it.
        return self.feature_bank(0) | (self.feature_bank(1) << 32)

    def set_driver_features(self, value):
        self.win.set_reg("DriverFeaturesSel", 0)
        self.win.set_reg("DriverFeatures", value & 0xFFFFFFFF)
        if not self.legacy:
            self.win.set_reg("DriverFeaturesSel", 1)
            self.win.set_reg("DriverFeatures", (value >> 32) & 0xFFFFFFFF)
        else:
            # Legacy has no feature bits above 31 to accept; leave the selector at 0.
            pass

    # -- queues
    def queue_max(self, index):
        self.select_queue(index)
        return self.win.reg("QueueNumMax")

    def setup_queue(self, index, size, desc, driver, device):
        """Modern: size and the three ring addresses.  Legacy: ``desc`` is the page-aligned
        base of the one contiguous ring area (see ``legacy_ring_layout``); the other two
        addresses are ignored and the queue goes live with the QueuePFN write."""
        self.select_queue(index)
        self.win.set_reg("QueueNum", size)
        if self.legacy:
            if desc % self.page_size:
                raise ValueError(f"legacy ring base 0x{desc:x} is not page-aligned")
            self.win.set_reg("GuestPageSize", self.page_size)
            self.win.set_reg("QueueAlign", self.queue_align)
            self.win.set_reg("QueuePFN", desc // self.page_size)
            return
        for name, addr in (("QueueDesc", desc), ("QueueDriver", driver),
                           ("QueueDevice", device)):
            self.win.set_reg(name + "Low", addr & 0xFFFFFFFF)
            self.win.set_reg(name + "High", addr >> 32)

    def enable_queue(self, index):
        if self.legacy:
            return  # a legacy queue is live once its QueuePFN is written
        self.select_queue(index)
        self.win.set_reg("QueueReady", 1)

    def disable_queue(self, index):
        """Modern: QueueReady 0 (read back, as the spec asks).  Legacy: QueuePFN 0."""
        self.select_queue(index)
        if self.legacy:
            self.win.set_reg("QueuePFN", 0)
            return self.win.reg("QueuePFN")
        self.win.set_reg("QueueReady", 0)
        return self.win.reg("QueueReady")

    def queue_enabled(self, index):
        self.select_queue(index)
        return self.win.reg("QueuePFN" if self.legacy else "QueueReady")

    def notify(self, index):
        self.win.set_reg("QueueNotify", index)

    # -- interrupts
    def interrupt_status(self):
        return self.win.reg("InterruptStatus")

    def ack_interrupt(self, bits):
        self.win.set_reg("InterruptACK", bits)

    def read_interrupt(self):
        status = self.win.reg("InterruptStatus")
        if status:
            self.win.set_reg("InterruptACK", status)
        return bool(status & 1), bool(status & 2)

    # -- device configuration space (from 0x100, at the field's natural width)
    def config_read(self, offset, width):
        base = regs.MMIO["Config"] + offset
        if width == 8:  # two 32-bit halves, low first
            return self.win.read(base, 4) | (self.win.read(base + 4, 4) << 32)
        return self.win.read(base, width)

    def config_write(self, offset, value, width):
        base = regs.MMIO["Config"] + offset
        if width == 8:
            self.win.write(base, value & 0xFFFFFFFF, 4)
            self.win.write(base + 4, value >> 32, 4)
            return
        self.win.write(base, value, width)

    def config_generation(self):
        """ConfigGeneration; the legacy layout has none, so it reads as a constant 0."""
        if self.legacy:
            return 0
        return self.win.reg("ConfigGeneration")

    def close(self):
        self.win.close()
