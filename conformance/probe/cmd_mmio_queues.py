"""Probe commands for the virtio-mmio queue registers: does the device use the rings
exactly where (and as large as) the driver said?

``mmio_queue_layout`` places one queue's three areas at distinct, non-adjacent
addresses (modern) or at a legacy base with a non-default QueueAlign (legacy), fills
the places where a device reading the registers wrongly would look or write with
decoys, serves real requests until the ring has wrapped, and reports what it found
where.  On the modern layout it first leaves QueueReady at 0 with a request made
available and notified: the device must leave that queue alone; a fresh bring-up with
QueueReady 1 then gets the same request served (the control).

``mmio_config_widths`` reads the start of device configuration at 1, 2 and 4 bytes.

Both reset the device first and leave it reset; every register access is in ``trace``.
"""

import time

from . import requests as reqmod
from .device import SETTLE_SECONDS, USED_SECONDS, Device, format_access
from .mmio import MmioTransport, legacy_ring_layout
from .regs import STATUS
from .virtqueue import SplitQueue

PAGE = 4096
LEGACY_ALIGN = 8192  # not the 4096 a legacy device would assume without QueueAlign
DECOY = 0x5A  # bytes where a misreading device would write used elements
ABSENT_HEAD = 0xFF  # bytes past the available ring: a head no queue has
WRAP_EXTRA = 2  # requests past one full ring, so the used index wraps the ring
NOT_READY_SETTLE = max(SETTLE_SECONDS, 0.3)


class PlacedSplitQueue(SplitQueue):
    """A split queue whose three areas are at addresses the caller chose."""

    def __init__(self, mem, index, size, desc, avail, used):
        if size < 1 or size > 32768 or size & (size - 1):
            raise ValueError(f"split queue size {size} is not a power of 2 in 1..32768")
        self.mem, self.index, self.size, self.event_idx = mem, index, size, False
        self.desc, self.avail, self.used = desc, avail, used
        self.used_offset = 0
        self.total = 0
        self.free = list(range(size))
        self.chains = {}
        self.avail_idx = 0
        self.last_used = 0
        self.indirect_tables = {}

    def snapshot(self):
        return (self.mem.read(self.desc, 16 * self.size)
                + self.mem.read(self.avail, 6 + 2 * self.size))


def _open(location, virtio_id):
    from .dma import DmaMemory

    if not reqmod.supported(virtio_id):
        raise ValueError(f"no requests known for virtio device type {virtio_id}")
    mem = DmaMemory()
    t = MmioTransport.at(location)
    return Device(t, mem), mem


def _fill(mem, addr, length, byte):
    mem.write(addr, bytes([byte]) * length)


def _intact(mem, region):
    addr, length, byte = region
    data = mem.read(addr, length)
    changed = [i for i, b in enumerate(data) if b != byte]
    return {"addr": addr, "length": length, "changed": len(changed),
            "first_changed": (addr + changed[0]) if changed else None}


def _used_ring(q):
    """The used ring as the driver reads it at the programmed device area."""
    return {"flags": q.mem.load(q.used, 2), "idx": q.used_idx(),
            "ring": [list(q.used_elem(i)) for i in range(q.size)]}


def _serve(dev, q, req):
    """One request through ``q``: made available, notified, waited for."""
    ident = q.add(req.segments())
    dev.mark(f"notify {req.name} (head {ident}, avail idx {q.avail_idx})")
    dev.notify(q.index)
    done = q.wait_used(1, USED_SECONDS)
    used = q.reap()
    obs = req.observe()
    return {"name": req.name, "id": ident, "completed": done, "used": used,
            "written": obs["written"], "writable_total": obs["writable_total"],
            "readable_untouched": obs["readable_untouched"],
            "guards_intact": obs["guards_intact"]}


def _place_modern(mem, size):
    """Three areas, each in its own allocation with unused pages between them, in an
    order unlike the contiguous layout (device area lowest, descriptor table next,
    driver area last).  Returns (addresses, decoy regions)."""
    device_block = mem.alloc(2 * PAGE)
    mem.alloc(PAGE)  # a gap
    desc_block = mem.alloc(3 * PAGE)
    mem.alloc(PAGE)
    driver_block = mem.alloc(PAGE)
    desc, avail, used = desc_block, driver_block, device_block
    # Where the contiguous layout would put the other two areas, relative to the
    # descriptor table: the available ring right after it (left at 0: nothing offered),
    # the used ring on the next page (a decoy pattern: any write there shows).
    default_used = desc + PAGE
    _fill(mem, default_used, 2 * PAGE, DECOY)
    avail_end = avail + 6 + 2 * size
    used_end = used + 6 + 8 * size
    _fill(mem, avail_end, PAGE - (avail_end - driver_block), ABSENT_HEAD)
    _fill(mem, used_end, 2 * PAGE - (used_end - device_block), DECOY)
    decoys = {
        "default_used_area": (default_used, 2 * PAGE, DECOY),
        "past_used_ring": (used_end, 2 * PAGE - (used_end - device_block), DECOY),
    }
    return (desc, avail, used), decoys, {"default_avail": desc + 16 * size,
                                         "default_used": default_used,
                                         "past_avail_ring": avail_end}


def _place_legacy(mem, size, align):
    """One contiguous legacy area at an ``align``-aligned base; the page where a
    4096-aligned used ring would start holds a decoy, as does everything past the
    used ring."""
    base = mem.alloc(4 * PAGE, align)
    desc, avail, used = legacy_ring_layout(size, base, align)
    _d, _a, used_4k = legacy_ring_layout(size, base, PAGE)
    avail_end = avail + 6 + 2 * size
    used_end = used + 6 + 8 * size
    _fill(mem, avail_end, used - avail_end, 0)
    if used_4k < used:
        _fill(mem, used_4k, used - used_4k, DECOY)
    _fill(mem, used_end, base + 4 * PAGE - used_end, DECOY)
    decoys = {"past_used_ring": (used_end, base + 4 * PAGE - used_end, DECOY)}
    if used_4k < used:
        decoys["default_used_area"] = (used_4k, used - used_4k, DECOY)
    return (desc, avail, used), decoys, {"default_used": used_4k, "base": base}


def _bring_up(dev, wanted, queues, target, out):
    """Reset through FEATURES_OK, every queue but ``target`` set up the ordinary way.
    Returns False when the device refused the features."""
    after_reset, offered = dev.begin()
    status = dev.negotiate(wanted)
    out.setdefault("bring_up", {"status_after_reset": after_reset, "offered": offered,
                                "accepted": dev.accepted, "status_after_features": status})
    if not dev.legacy and not status & STATUS["FEATURES_OK"]:
        out["bring_up"]["features_refused"] = True
        return False
    for i in queues:
        if i != target:
            dev.setup_queue(i)
    return True


def _program(dev, mem, target, size, ready):
    """Place and program ``target``; modern: QueueReady 1 only if ``ready``."""
    t = dev.t
    if t.legacy:
        addrs, decoys, where = _place_legacy(mem, size, LEGACY_ALIGN)
    else:
        addrs, decoys, where = _place_modern(mem, size)
    q = PlacedSplitQueue(mem, target, size, *addrs)
    info = {"desc": addrs[0], "driver": addrs[1], "device": addrs[2], **where}
    dev.mark(f"program queue {target}: size {size}, desc 0x{addrs[0]:x}, "
             f"driver 0x{addrs[1]:x}, device 0x{addrs[2]:x}"
             + ("" if t.legacy else f", QueueReady {int(ready)}"))
    if t.legacy:
        t.queue_align = LEGACY_ALIGN
        t.setup_queue(target, size, addrs[0], 0, 0)
        info["align"] = LEGACY_ALIGN
        info["pfn_read"] = t.queue_enabled(target)
    else:
        t.setup_queue(target, size, *addrs)
        if ready:
            t.enable_queue(target)
        info["ready_read"] = t.queue_enabled(target)
    dev.queues[target] = q
    return q, decoys, info


def mmio_queue_layout(location, virtio_id, size=8):
    """Real requests on one queue placed by the registers (see the module docstring).

    Modern: first the queue programmed with QueueReady 0 and a request notified (it
    must stay untouched); then a fresh bring-up with QueueReady 1 before DRIVER_OK
    (the order a driver uses) in which the same, untouched request is offered again
    and must be served (the control), followed by enough requests to wrap the ring.
    """
    dev, mem = _open(location, virtio_id)
    t = dev.t
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name, "version": t.version, "legacy": t.legacy}
    try:
        # Which queue the requests go to (the builder needs the features accepted).
        if not _bring_up(dev, wanted, (), None, out):
            return out
        first = build(mem, dev, variety=False)[0]
        target = first.queue
        largest = t.queue_max(target)
        # Smaller than the maximum, so a device that ignores QueueNum shows it.
        size = min(size, max(1, largest // 2)) if largest else size
        out["queue"] = {"index": target, "max": largest, "size": size}
        if not t.legacy:
            if not _bring_up(dev, wanted, queues, target, out):
                return out
            q, decoys, info = _program(dev, mem, target, size, ready=False)
            out["not_ready"] = _not_ready(dev, mem, q, first, decoys, info)
        if not _bring_up(dev, wanted, queues, target, out):
            return out
        q, decoys, info = _program(dev, mem, target, size, ready=True)
        out["queue"].update(info)
        out["status_after_driver_ok"] = dev.driver_ok()
        requests = []
        req = first
        while len(requests) < size + WRAP_EXTRA:
            r = _serve(dev, q, req)
            requests.append(r)
            if not r["completed"]:
                break
            req = build(mem, dev, variety=False)[0]
        out["requests"] = requests
        out["used_ring"] = _used_ring(q)
        out["decoys"] = {k: _intact(mem, v) for k, v in decoys.items()}
        out["status_end"] = t.get_status()
    finally:
        out["status_final_reset"] = dev.reset()
        out["trace"] = dev.trace(limit=500)
        dev.close()
    return out


def _not_ready(dev, mem, q, req, decoys, info):
    """QueueReady left 0 with DRIVER_OK set: a request made available and notified must
    stay untouched (buffers, used ring, decoys)."""
    t = dev.t
    status = dev.driver_ok()
    used_before = mem.read(q.used, 6 + 8 * q.size)
    ident = q.add(req.segments())
    dev.mark(f"with QueueReady 0: notify {req.name} (head {ident})")
    dev.notify(q.index)
    time.sleep(NOT_READY_SETTLE)
    early = req.observe()
    return {"id": ident, "settle_seconds": NOT_READY_SETTLE, "queue": info,
            "status_after_driver_ok": status,
            "ready_read": t.queue_enabled(q.index),
            "used_ring_untouched": mem.read(q.used, 6 + 8 * q.size) == used_before,
            "used_idx": q.used_idx(),
            "buffers_changed": sum(b["changed"] for b in early["buffers"]),
            "guards_intact": early["guards_intact"],
            "decoys": {k: _intact(mem, v) for k, v in decoys.items()},
            "status": t.get_status()}


# Device configuration bytes compared, per device type: fields every QEMU 7.2 device
# of that type has whatever it offers (net: mac, status; console: cols, rows,
# max_nr_ports; balloon: num_pages, actual; 9p: tag_len and the tag "vc9p").
CONFIG_BYTES = {1: 8, 2: 16, 3: 8, 5: 8, 8: 16, 9: 6, 18: 16}


def mmio_config_widths(location, length):
    """The first ``length`` bytes of device configuration read one byte at a time, as
    16-bit and as 32-bit loads (each whole unit inside ``length``)."""
    t = MmioTransport.at(location)
    try:
        t.win.mark("reset at start")
        t.reset()
        t.set_status(STATUS["ACKNOWLEDGE"])
        t.set_status(STATUS["ACKNOWLEDGE"] | STATUS["DRIVER"])
        out = {"version": t.version, "length": length}
        for width in (1, 2, 4):
            t.win.mark(f"config read at width {width}")
            out[f"width_{width}"] = [t.config_read(off, width)
                                     for off in range(0, length - length % width, width)]
        t.win.mark("bytes again")
        out["width_1_again"] = [t.config_read(off, 1) for off in range(length)]
        t.win.mark("reset at end")
        out["status_final_reset"] = t.reset()
        out["trace"] = [format_access(a) for a in t.trace]
    finally:
        t.close()
    return out


COMMANDS = {
    "mmio_queue_layout": mmio_queue_layout,
    "mmio_config_widths": mmio_config_widths,
}
