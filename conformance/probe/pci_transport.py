"""The PCI transport layer of the in-guest driver.

``PciTransport`` drives a device through its modern interface (common configuration,
notify, ISR and device structures found by the capability walk); ``LegacyPciTransport``
drives a transitional device through the legacy register block in I/O BAR0.  Both
implement ``transport.Transport`` so the shared ring layer runs on either, and both
trace every access on the function's trace: ``(op, where, width, value)``.

Open one with ``open_transport(location, legacy=False)``.  The function must not be
bound to a Linux driver; opening it enables decoding and bus mastering and disables
INTx (see ``PciFunction.take_ownership``).
"""

import time

from . import pcicaps, regs
from .pci import PciFunction
from .transport import Transport

RESET_DEADLINE = 5.0  # seconds a device gets to finish a reset before we give up
COMMON = regs.PCI_COMMON
LEGACY = regs.PCI_LEGACY


class Structure:
    """A virtio structure: a range of one BAR, addressed relative to its start."""

    def __init__(self, window, offset, length, cap=None):
        self.window = window
        self.offset = offset
        self.length = length
        self.cap = cap

    def read(self, off, width):
        return self.window.read(self.offset + off, width)

    def write(self, off, value, width):
        self.window.write(self.offset + off, value, width)


def _usable(fn, caps, minimum):
    """A filter for ``pcicaps.first``: a capability a driver can map (valid BAR, long
    enough for ``minimum`` bytes, inside its BAR)."""
    def ok(cap):
        if cap.get("bar") is None or cap["bar"] > regs.VIRTIO_PCI_BAR_MAX:
            return False
        if cap.get("length", 0) < minimum:
            return False
        return pcicaps.region_in_bar(cap, caps["bars"])
    return ok


class Msix:
    """The MSI-X capability, table and PBA of a function (for vector checks)."""

    def __init__(self, fn, cap):
        self.fn = fn
        self.cap = cap
        self.size = cap["table_size"]
        self.table = fn.bar(cap["table_bar"])
        self.pba = fn.bar(cap["pba_bar"])

    def control(self):
        return self.fn.config_read(self.cap["at"] + regs.MSIX["MessageControl"], 2)

    def set_control(self, enable, mask_all):
        ctrl = self.control() & ~(regs.MSIX_CTRL_ENABLE | regs.MSIX_CTRL_MASKALL)
        ctrl |= (regs.MSIX_CTRL_ENABLE if enable else 0)
        ctrl |= (regs.MSIX_CTRL_MASKALL if mask_all else 0)
        self.fn.config_write(self.cap["at"] + regs.MSIX["MessageControl"], ctrl, 2)

    def enabled(self):
        return bool(self.control() & regs.MSIX_CTRL_ENABLE)

    def program(self, vector, address, data, masked=True):
        base = self.cap["table_offset"] + vector * regs.MSIX_ENTRY_SIZE
        self.table.write(base + 12, regs.MSIX_ENTRY_CTRL_MASKED, 4)  # mask while editing
        self.table.write(base, address & 0xFFFFFFFF, 4)
        self.table.write(base + 4, address >> 32, 4)
        self.table.write(base + 8, data, 4)
        self.table.write(base + 12, regs.MSIX_ENTRY_CTRL_MASKED if masked else 0, 4)

    def mask(self, vector, masked=True):
        base = self.cap["table_offset"] + vector * regs.MSIX_ENTRY_SIZE
        self.table.write(base + 12, regs.MSIX_ENTRY_CTRL_MASKED if masked else 0, 4)

    def pending(self, vector):
        word = self.pba.read(self.cap["pba_offset"] + (vector // 32) * 4, 4)
        return bool(word >> (vector % 32) & 1)

    def pending_all(self):
        return [v for v in range(self.size) if self.pending(v)]


class PciTransport(Transport):
    """The modern virtio-pci interface, found wherever the capabilities put it."""

    def __init__(self, address):
        self.fn = PciFunction(address)
        self.trace = self.fn.trace
        self.command_before = self.fn.take_ownership()
        self.caps = pcicaps.walk(self.fn, self.fn.resources())
        self.negotiated = 0
        self._notify_off = {}

        def structure(type_name, minimum):
            cap = pcicaps.first(self.caps, type_name, _usable(self.fn, self.caps, minimum))
            if cap is None:
                return None
            return Structure(self.fn.bar(cap["bar"]), cap["offset"], cap["length"], cap)

        self.common = structure("common", regs.PCI_COMMON_LEN_V1)
        if self.common is None:
            raise RuntimeError(f"{address} has no usable common configuration capability")
        self.notify_region = structure("notify", 2)
        self.isr = structure("isr", 1)
        self.device = structure("device", 0)
        msix_cap = self.caps["msix"]
        self.msix = Msix(self.fn, msix_cap) if msix_cap else None

    # -- common configuration fields by name
    def cc_read(self, name):
        off, width = COMMON[name]
        if width == 8:
            return self.cc_read64(name)
        return self.common.read(off, width)

    def cc_write(self, name, value):
        off, width = COMMON[name]
        if width == 8:
            self.cc_write64(name, value)
        else:
            self.common.write(off, value, width)

    def cc_read64(self, name, high_first=False):
        off = COMMON[name][0]
        if high_first:
            hi = self.common.read(off + 4, 4)
            lo = self.common.read(off, 4)
        else:
            lo = self.common.read(off, 4)
            hi = self.common.read(off + 4, 4)
        return (hi << 32) | lo

    def cc_write64(self, name, value, high_first=False):
        off = COMMON[name][0]
        halves = [(off, value & 0xFFFFFFFF), (off + 4, value >> 32)]
        for o, v in (reversed(halves) if high_first else halves):
            self.common.write(o, v, 4)

    # -- device status and reset
    def reset(self):
        self.cc_write("device_status", 0)
        deadline = time.monotonic() + RESET_DEADLINE
        while self.cc_read("device_status") != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"device_status did not read 0 within {RESET_DEADLINE:.0f} s of a reset")
            time.sleep(0.001)
        self.negotiated = 0
        self._notify_off = {}

    def get_status(self):
        return self.cc_read("device_status")

    def set_status(self, value):
        self.cc_write("device_status", value)

    # -- features
    def feature_bank(self, bank):
        self.cc_write("device_feature_select", bank)
        return self.cc_read("device_feature")

    def device_features(self, banks=4):
        value = 0
        for bank in range(banks):
            value |= self.feature_bank(bank) << (32 * bank)
        return value

    def set_driver_features(self, value, banks=4):
        for bank in range(max(banks, (value.bit_length() + 31) // 32)):
            self.cc_write("driver_feature_select", bank)
            self.cc_write("driver_feature", (value >> (32 * bank)) & 0xFFFFFFFF)
        self.negotiated = value

    def driver_features(self, banks=4):
        value = 0
        for bank in range(banks):
            self.cc_write("driver_feature_select", bank)
            value |= self.cc_read("driver_feature") << (32 * bank)
        return value

    # -- queues
    def num_queues(self):
        return self.cc_read("num_queues")

    def select(self, index):
        self.cc_write("queue_select", index)

    def queue_max(self, index):
        self.select(index)
        return self.cc_read("queue_size")

    def setup_queue(self, index, size, desc, driver, device):
        self.select(index)
        self.cc_write("queue_size", size)
        self.cc_write64("queue_desc", desc)
        self.cc_write64("queue_driver", driver)
        self.cc_write64("queue_device", device)
        self._notify_off[index] = self.cc_read("queue_notify_off")

    def enable_queue(self, index):
        self.select(index)
        self.cc_write("queue_enable", 1)

    def notify_offset(self, index):
        """Offset of queue ``index``'s notify address within the notify structure."""
        if index not in self._notify_off:
            self.select(index)
            self._notify_off[index] = self.cc_read("queue_notify_off")
        cap = self.notify_region.cap
        return self._notify_off[index] * cap.get("notify_off_multiplier", 0)

    def notify(self, index, value=None):
        if self.notify_region is None:
            raise RuntimeError("no usable notification capability")
        data_bit = 1 << regs.FEATURE_BITS["VIRTIO_F_NOTIFICATION_DATA"]
        if value is not None or self.negotiated & data_bit:
            self.notify_region.write(self.notify_offset(index),
                                     index if value is None else value, 4)
        else:
            self.notify_region.write(self.notify_offset(index), index, 2)

    # -- interrupts
    def read_isr(self):
        return self.isr.read(0, 1)

    def read_interrupt(self):
        isr = self.read_isr()
        return bool(isr & regs.PCI_ISR_QUEUE), bool(isr & regs.PCI_ISR_CONFIG)

    # -- device configuration
    def config_read(self, offset, width):
        return self.device.read(offset, width)

    def config_write(self, offset, value, width):
        self.device.write(offset, value, width)

    def config_generation(self):
        return self.cc_read("config_generation")

    def close(self):
        self.fn.close()


class LegacyPciTransport(Transport):
    """A transitional device driven through its legacy register block in I/O BAR0."""

    def __init__(self, address):
        self.fn = PciFunction(address)
        self.trace = self.fn.trace
        self.command_before = self.fn.take_ownership()
        self.caps = pcicaps.walk(self.fn, self.fn.resources())
        bar0 = self.caps["bars"][0]
        if bar0["kind"] != "io" or not bar0["size"]:
            raise RuntimeError("{} has no I/O BAR0 (kind {}): no legacy interface".format(address, bar0["kind"]))
        self.io = self.fn.bar(0)
        msix_cap = self.caps["msix"]
        self.msix = Msix(self.fn, msix_cap) if msix_cap else None

    def reg_read(self, name):
        off, width = LEGACY[name]
        return self.io.read(off, width)

    def reg_write(self, name, value):
        off, width = LEGACY[name]
        self.io.write(off, value, width)

    def config_base(self):
        """Where device configuration starts: after the vectors when MSI-X is on."""
        if self.msix is not None and self.msix.enabled():
            return regs.PCI_LEGACY_CONFIG_MSIX
        return regs.PCI_LEGACY_CONFIG

    def reset(self):
        self.reg_write("DeviceStatus", 0)
        deadline = time.monotonic() + RESET_DEADLINE
        while self.reg_read("DeviceStatus") != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"legacy status did not read 0 within {RESET_DEADLINE:.0f} s of a reset")
            time.sleep(0.001)

    def get_status(self):
        return self.reg_read("DeviceStatus")

    def set_status(self, value):
        self.reg_write("DeviceStatus", value)

    def device_features(self):
        return self.reg_read("HostFeatures")

    def set_driver_features(self, value):
        self.reg_write("GuestFeatures", value & 0xFFFFFFFF)

    def queue_max(self, index):
        self.reg_write("QueueSelect", index)
        return self.reg_read("QueueSize")

    def setup_queue(self, index, size, desc, driver, device):
        # Legacy: the size is fixed by the device and the rings follow the descriptor
        # table at 4096-byte alignment; writing the page number also activates the queue.
        if desc & ((1 << regs.PCI_LEGACY_PFN_SHIFT) - 1):
            raise ValueError(f"legacy queue address 0x{desc:x} is not page aligned")
        self.reg_write("QueueSelect", index)
        self.reg_write("QueueAddress", desc >> regs.PCI_LEGACY_PFN_SHIFT)

    def enable_queue(self, index):
        pass  # writing QueueAddress already did it

    def notify(self, index):
        self.reg_write("QueueNotify", index)

    def read_interrupt(self):
        isr = self.reg_read("ISRStatus")
        return bool(isr & regs.PCI_ISR_QUEUE), bool(isr & regs.PCI_ISR_CONFIG)

    def config_read(self, offset, width):
        return self.io.read(self.config_base() + offset, width)

    def config_write(self, offset, value, width):
        self.io.write(self.config_base() + offset, value, width)

    def config_generation(self):
        return 0  # the legacy interface has no generation counter

    def close(self):
        self.fn.close()


def open_transport(location, legacy=False):
    """A transport on the PCI function named by ``location`` (``{"address": ...}``)."""
    address = location["address"] if isinstance(location, dict) else location
    return LegacyPciTransport(address) if legacy else PciTransport(address)
