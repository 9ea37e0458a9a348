"""The device layer of the in-guest driver: bring-up over any ``Transport``.

Reset, ACKNOWLEDGE, DRIVER, feature negotiation, FEATURES_OK, queues with rings in
probe memory, DRIVER_OK; then requests, interrupts and a compact register trace.  It
knows no register: every access goes through the transport (transport.py), so the same
sequence runs on MMIO and PCI, modern and legacy.
"""

import time

from .regs import FEATURE_BITS, STATUS
from .virtqueue import PackedQueue, SplitQueue

ACK, DRIVER, DRIVER_OK = STATUS["ACKNOWLEDGE"], STATUS["DRIVER"], STATUS["DRIVER_OK"]
FEATURES_OK, NEEDS_RESET = STATUS["FEATURES_OK"], STATUS["DEVICE_NEEDS_RESET"]
VERSION_1 = 1 << FEATURE_BITS["VIRTIO_F_VERSION_1"]
INDIRECT_DESC = 1 << FEATURE_BITS["VIRTIO_F_INDIRECT_DESC"]
EVENT_IDX = 1 << FEATURE_BITS["VIRTIO_F_EVENT_IDX"]
RING_PACKED = 1 << FEATURE_BITS["VIRTIO_F_RING_PACKED"]
IN_ORDER = 1 << FEATURE_BITS["VIRTIO_F_IN_ORDER"]
RING_RESET = 1 << FEATURE_BITS["VIRTIO_F_RING_RESET"]

LEGACY_VARIANTS = ("mmio-legacy", "pci-transitional")
RESET_SECONDS = 5.0
USED_SECONDS = 2.0  # a request takes milliseconds under TCG; 2 s covers a busy host
SETTLE_SECONDS = 0.2  # how long to watch for something that must not happen


def open_transport(location, variant=None):
    """The transport for a probe command's ``location``.

    MMIO: the Version register says legacy or modern.  PCI: a transitional device is
    driven through its legacy I/O BAR when the variant is ``pci-transitional``, through
    the modern capabilities otherwise.
    """
    if location["bus"] == "mmio":
        from .mmio import MmioTransport
        return MmioTransport.at(location)
    from . import pci_transport
    return pci_transport.open_transport(location, legacy=variant == "pci-transitional")


def is_legacy(transport, variant=None):
    """Whether ``transport`` speaks the legacy interface (its own word first)."""
    legacy = getattr(transport, "legacy", None)
    return bool(legacy) if legacy is not None else variant in LEGACY_VARIANTS


def queue_size_is_fixed(transport, legacy):
    """Legacy PCI has no way to choose a queue size: the device's maximum is the size."""
    return legacy and not hasattr(transport, "win")


def format_access(entry):
    op, where, width, value = entry
    if op == "#":
        return "# " + str(value)
    where = f"0x{where:03x}" if isinstance(where, int) else str(where)
    value = f"0x{value:x}" if isinstance(value, int) else str(value)
    size = "" if width in (4, None) else f".{width}"
    return f"{op} {where}{size}={value}"


class Device:
    """One device under test, driven from reset to DRIVER_OK and beyond."""

    def __init__(self, transport, mem, legacy=None):
        self.t = transport
        self.mem = mem
        self.legacy = is_legacy(transport) if legacy is None else legacy
        self.offered = 0
        self.accepted = 0
        self.queues = {}
        self.irq_used = 0  # used-buffer interrupts seen (each read acknowledges)
        self.irq_config = 0
        self.notes = []
        self._trace_from = 0

    # -- evidence
    def mark(self, note):
        self.t.trace.append(("#", 0, 0, note))

    def trace(self, limit=300):
        """The accesses since the device was opened, as compact text (the last ``limit``)."""
        items = self.t.trace[self._trace_from:]
        text = [format_access(e) for e in items[-limit:]]
        if len(items) > limit:
            text.insert(0, f"# {len(items) - limit} earlier accesses left out")
        return text

    # -- status
    def reset(self):
        """Write 0 to status and wait (bounded) for 0; returns the value read last."""
        self.mark("reset")
        status = self.t.reset()
        if status is None:
            status = self.t.get_status()
        self.queues = {}
        return status

    def add_status(self, bits):
        self.t.set_status(self.t.get_status() | bits)
        return self.t.get_status()

    def begin(self):
        """Reset, ACKNOWLEDGE, DRIVER; returns (status after reset, offered features)."""
        after_reset = self.reset()
        self.add_status(ACK)
        self.add_status(DRIVER)
        self.offered = self.t.device_features()
        return after_reset, self.offered

    def negotiate(self, wanted):
        """Accept ``wanted & offered`` (plus VERSION_1 on a modern interface).

        Returns the status read back after FEATURES_OK (modern), or after accepting the
        features (legacy, which has no FEATURES_OK).
        """
        accepted = wanted & self.offered
        if self.legacy:
            accepted &= 0xFFFFFFFF
        elif self.offered & VERSION_1:
            accepted |= VERSION_1
        self.accepted = accepted
        self.mark(f"features 0x{accepted:x}")
        self.t.set_driver_features(accepted)
        if self.legacy:
            return self.t.get_status()
        return self.add_status(FEATURES_OK)

    def has(self, bit):
        return bool(self.accepted & bit)

    def queue_max(self, index):
        return self.t.queue_max(index)

    def setup_queue(self, index, size=None, packed=None):
        """A queue with rings in probe memory (split, or packed when negotiated)."""
        largest = self.t.queue_max(index)
        if not largest:
            raise RuntimeError(f"queue {index} does not exist (size 0)")
        if queue_size_is_fixed(self.t, self.legacy):
            size = largest
        elif size is None:
            size = min(largest, 64)
        packed = self.has(RING_PACKED) if packed is None else packed
        if packed:
            q = PackedQueue(self.mem, index, size)
        else:
            q = SplitQueue(self.mem, index, size, event_idx=self.has(EVENT_IDX))
        self.mark(f"queue {index} size {size} ({q.kind})")
        self.t.setup_queue(index, size, *q.addresses())
        self.t.enable_queue(index)
        self.queues[index] = q
        return q

    def driver_ok(self):
        self.mark("DRIVER_OK")
        return self.add_status(DRIVER_OK)

    def bring_up(self, wanted, queues, driver_ok=True, sizes=None):
        """Reset through DRIVER_OK with ``queues`` set up; returns a summary dict."""
        after_reset, offered = self.begin()
        status = self.negotiate(wanted)
        summary = {"status_after_reset": after_reset, "offered": offered,
                   "accepted": self.accepted, "status_after_features": status}
        if not self.legacy and not status & FEATURES_OK:
            summary["features_refused"] = True
            return summary
        for i in queues:
            self.setup_queue(i, (sizes or {}).get(i))
        if driver_ok:
            summary["status_after_driver_ok"] = self.driver_ok()
        return summary

    # -- requests
    def notify(self, index):
        self.t.notify(index)

    def submit(self, q, segments, indirect=False, notify=True, direct=0, **kw):
        """Offer one buffer; ``indirect`` puts its segments in an indirect table, after
        ``direct`` ordinary descriptors (split rings only)."""
        if q.kind == "packed":
            ident = q.add(segments, indirect=indirect, **kw)
        elif indirect:
            ident = q.add_indirect(segments, direct=direct)
        else:
            ident = q.add(segments)
        if notify:
            self.t.notify(q.index)
        return ident

    # -- interrupts
    def poll_interrupts(self):
        """Read (and acknowledge) the transport's interrupt causes; counts them."""
        used, config = self.t.read_interrupt()
        self.irq_used += 1 if used else 0
        self.irq_config += 1 if config else 0
        return used, config

    def wait_interrupt(self, which, seconds):
        """Wait (bounded) for a cause (``used`` or ``config``); True if seen."""
        deadline = time.monotonic() + seconds
        while True:
            used, config = self.poll_interrupts()
            if (used if which == "used" else config):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    def watch_interrupts(self, seconds=SETTLE_SECONDS):
        """Every cause seen during ``seconds``: {"used": bool, "config": bool}."""
        seen = {"used": False, "config": False}
        deadline = time.monotonic() + seconds
        while True:
            used, config = self.poll_interrupts()
            seen["used"] |= used
            seen["config"] |= config
            if time.monotonic() > deadline:
                return seen
            time.sleep(0.01)

    def clear_interrupts(self):
        self.poll_interrupts()

    def config_bytes(self, length):
        """The first ``length`` bytes of device configuration, read one byte at a time
        where the transport allows it (fields are compared, not interpreted)."""
        return [self.t.config_read(i, 1) for i in range(length)]

    def close(self):
        try:
            self.t.close()
        except Exception:
            pass


def reset_queue(transport, index, seconds=1.0):
    """Virtqueue reset through whichever register the transport has (the abstract
    interface has no such method yet): MMIO QueueReset, PCI common config queue_reset.

    Returns the values read back while waiting for the reset to finish, and the queue's
    enable register afterwards.
    """
    if hasattr(transport, "win"):
        transport.select_queue(index)
        transport.set_reg("QueueReset", 1)
        read_reset = lambda: transport.reg("QueueReset")  # noqa: E731
        read_enable = lambda: transport.reg("QueueReady")  # noqa: E731
    elif hasattr(transport, "cc_write"):
        transport.select(index)
        transport.cc_write("queue_reset", 1)
        read_reset = lambda: transport.cc_read("queue_reset")  # noqa: E731
        read_enable = lambda: transport.cc_read("queue_enable")  # noqa: E731
    else:
        raise RuntimeError("this transport has no virtqueue reset register")
    seen = [read_reset()]
    deadline = time.monotonic() + seconds
    while seen[-1] and time.monotonic() < deadline:
        time.sleep(0.005)
        seen.append(read_reset())
    return {"queue_reset_reads": seen[:3] + seen[-1:], "finished": seen[-1] == 0,
            "queue_enable": read_enable()}
