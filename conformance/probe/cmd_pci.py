"""Probe commands of the virtio-pci transport (see commands.py).  Each returns a JSON-able
dict of raw observations plus ``accesses``: every config-space and BAR access made, as
``[op, where, width, value]``, with ``["#", step, 0, note]`` markers between steps.

Every command starts by resetting the device it owns and leaves it reset, except the
``arm`` phases, which leave the device live so the host can raise an event (a config
change over QMP) that the matching ``observe`` phase then looks at.
"""

import time

from . import pcicaps, regs
from .dma import DmaMemory
from .pci_transport import PciTransport, open_transport

S = regs.STATUS
F = regs.FEATURE_BITS
VERSION_1 = 1 << F["VIRTIO_F_VERSION_1"]
RING_RESET = 1 << F["VIRTIO_F_RING_RESET"]
NOTIFICATION_DATA = 1 << F["VIRTIO_F_NOTIFICATION_DATA"]
NET_F_STATUS = 1 << 16  # virtio-net: link status in config space (for set_link)
EVENT_DEADLINE = 3.0  # seconds an event (used buffer, config change) gets to show
MAX_QUEUES_READ = 1024
PROBE_BANKS = list(range(8)) + [0x80, 0xFFFF, 0xFFFFFFFF]  # device_feature_select values
MSIX_SINK_DATA = 0xC0DE0000  # data of probe MSI-X messages (| vector)


def _mark(t, step, note=0):
    t.trace.append(("#", step, 0, note))


def _accesses(t):
    return [list(a) for a in t.trace]


def _status_interrupt(t):
    return bool(t.fn.config_read(regs.PCI_CFG["Status"], 2) & regs.PCI_STATUS_BITS["INTERRUPT"])


def _wait(predicate, deadline=EVENT_DEADLINE):
    """Poll ``predicate`` until true or the deadline; returns its last value."""
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value or time.monotonic() > end:
            return value
        time.sleep(0.002)


def _queues(t, count):
    """Size and notify offset of queues 0..count-1 (after a reset)."""
    out = []
    for q in range(min(count, MAX_QUEUES_READ)):
        t.select(q)
        out.append({"index": q, "size": t.cc_read("queue_size"),
                    "notify_off": t.cc_read("queue_notify_off")})
    return out


def _negotiate(t, wanted):
    """Reset, then ACKNOWLEDGE, DRIVER, features, FEATURES_OK; returns (accepted, kept)."""
    t.reset()
    t.set_status(S["ACKNOWLEDGE"])
    t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
    offered = t.device_features()
    accepted = offered & wanted
    t.set_driver_features(accepted)
    t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"] | S["FEATURES_OK"])
    kept = bool(t.get_status() & S["FEATURES_OK"])
    return accepted, kept


# ------------------------------------------------------------------ a one-shot request
class OneShotRing:
    """A split virtqueue just big enough for one request (an event source for interrupt
    checks; the full ring driver lives in the virtqueue layer)."""

    def __init__(self, t, dma, queue):
        self.t, self.dma, self.queue = t, dma, queue
        self.size = min(t.queue_max(queue), 8)
        if self.size == 0:
            raise RuntimeError(f"queue {queue} does not exist")
        self.desc = dma.alloc(16 * self.size)
        self.avail = dma.alloc(6 + 2 * self.size)
        self.used = dma.alloc(6 + 8 * self.size)
        t.setup_queue(queue, self.size, self.desc, self.avail, self.used)

    def submit(self, buffers):
        """``buffers``: [(address, length, device_writable)] chained as one request."""
        for i, (addr, length, writable) in enumerate(buffers):
            flags = (regs.VRING["DESC_F_WRITE"] if writable else 0)
            if i + 1 < len(buffers):
                flags |= regs.VRING["DESC_F_NEXT"]
            base = self.desc + 16 * i
            self.dma.store(base, addr, 8)
            self.dma.store(base + 8, length, 4)
            self.dma.store(base + 12, flags, 2)
            self.dma.store(base + 14, i + 1 if i + 1 < len(buffers) else 0, 2)
        self.dma.store(self.avail + 4, 0, 2)  # ring[0] = head 0
        self.dma.store(self.avail + 2, 1, 2)  # idx = 1
        self.t.notify(self.queue)

    def used_idx(self):
        return self.dma.load(self.used + 2, 2)


def _request_buffers(virtio_id, dma):
    """One request the device completes by itself, for device types that have one."""
    if virtio_id == 4:  # entropy: one device-writable buffer
        return 0, [(dma.alloc(64), 64, True)]
    if virtio_id == 2:  # block: read sector 0 (header, data, status)
        header = dma.alloc(16)
        dma.write(header, bytes(16))  # type 0 = VIRTIO_BLK_T_IN, sector 0
        return 0, [(header, 16, False), (dma.alloc(512), 512, True), (dma.alloc(1), 1, True)]
    return None, None


# ------------------------------------------------------------------ capabilities
def pci_caps(location):
    """The capability walk, BAR sizes, per-queue notify offsets and offered features."""
    t = PciTransport(location["address"])
    try:
        t.reset()
        _mark(t, "features")
        offered = t.device_features()
        _mark(t, "queues")
        num = t.num_queues()
        queues = _queues(t, num)
        mmr = []
        for window in t.caps["legacy_mmr"]:
            mmr.append(_legacy_mmr_view(t, window))
        t.reset()
        return {"caps": t.caps, "config": t.fn.config_dump(), "resources": t.fn.resources(),
                "features": offered, "num_queues": num, "queues": queues,
                "legacy_mmr_views": mmr, "accesses": _accesses(t)}
    finally:
        t.close()


def _legacy_mmr_view(t, window):
    """The proposal's memory window next to I/O BAR0: the legacy header through both."""
    view = {"window": window}
    bars = t.caps["bars"]
    bar = window["bar"]
    if bar > regs.VIRTIO_PCI_BAR_MAX or bars[bar]["kind"] not in ("mem32", "mem64"):
        return view
    mem = t.fn.bar(bar)
    names = ["HostFeatures", "QueueSize", "DeviceStatus", "ISRStatus"]
    view["mmr"] = {n: mem.read(window["offset"] + regs.PCI_LEGACY[n][0],
                               regs.PCI_LEGACY[n][1]) for n in names if n != "ISRStatus"}
    if bars[0]["kind"] == "io" and bars[0]["size"]:
        io = t.fn.bar(0)
        view["io"] = {n: io.read(*regs.PCI_LEGACY[n]) for n in names if n != "ISRStatus"}
    return view


# ------------------------------------------------------------------ common configuration
def pci_common(location):
    t = PciTransport(location["address"])
    out = {}
    try:
        t.reset()
        _mark(t, "feature banks")
        out["feature_banks"] = {str(b): t.feature_bank(b) for b in PROBE_BANKS}
        offered = out["feature_banks"]["0"] | (out["feature_banks"]["1"] << 32)
        out["feature_banks_again"] = [t.feature_bank(1), t.feature_bank(0)]

        _mark(t, "driver_feature read-back")
        t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
        readback = {}
        for bank in (0, 1):
            word = (offered >> (32 * bank)) & 0xFFFFFFFF
            t.cc_write("driver_feature_select", bank)
            t.cc_write("driver_feature", word)
            readback[str(bank)] = {"wrote": word, "read": t.cc_read("driver_feature")}
        out["driver_feature_readback"] = readback
        # Re-select bank 0 after writing bank 1: the value belongs to its selector.
        t.cc_write("driver_feature_select", 0)
        out["driver_feature_reselect0"] = t.cc_read("driver_feature")

        _mark(t, "FEATURES_OK kept")
        accepted, kept = _negotiate(t, VERSION_1)
        out["features_ok"] = {"offered": offered, "accepted": accepted, "kept": kept,
                              "status": t.get_status()}
        _mark(t, "FEATURES_OK without VERSION_1")
        accepted, kept = _negotiate(t, 0)
        out["features_ok_no_version_1"] = {"accepted": accepted, "kept": kept,
                                           "status": t.get_status()}

        _mark(t, "queues")
        t.reset()
        num = t.num_queues()
        out["num_queues"] = num
        out["queues"] = _queues(t, num)
        beyond = [num, num + 1, num + 7, 0x7FFF, 0xFFFF]
        out["absent_queues"] = []
        for q in beyond:
            t.select(q)
            out["absent_queues"].append({"index": q, "size": t.cc_read("queue_size")})

        _mark(t, "64-bit halves")
        halves = {}
        if num:
            t.select(0)
            pattern = 0x1234567890ABC000
            t.cc_write64("queue_desc", pattern)
            halves["low_then_high"] = {"wrote": pattern,
                                       "read_low_first": t.cc_read64("queue_desc"),
                                       "read_high_first": t.cc_read64("queue_desc", True)}
            pattern2 = 0x0FEDCBA987654000
            t.cc_write64("queue_driver", pattern2, high_first=True)
            halves["high_then_low"] = {"wrote": pattern2,
                                       "read_low_first": t.cc_read64("queue_driver"),
                                       "read_high_first": t.cc_read64("queue_driver", True)}
        out["halves"] = halves

        _mark(t, "queue_enable and vectors before reset")
        out["reset"] = _reset_observation(t, num)
        out["queue_reset"] = _queue_reset(t, offered) if num else {"skipped": "no queues"}
        t.reset()
        out["accesses"] = _accesses(t)
        return out
    finally:
        t.close()


def _reset_observation(t, num):
    """Enable queue 0 and map vectors, then reset through device_status and look."""
    obs = {}
    accepted, kept = _negotiate(t, VERSION_1)
    dma = DmaMemory()
    try:
        if num:
            OneShotRing(t, dma, 0)
            t.enable_queue(0)
            obs["queue_enable_after_enable"] = t.cc_read("queue_enable")
        vector = 0 if t.msix is not None else regs.NO_VECTOR
        t.cc_write("config_msix_vector", vector)
        obs["config_vector_before"] = t.cc_read("config_msix_vector")
        qvec = []
        for q in range(min(num, 8)):
            t.select(q)
            t.cc_write("queue_msix_vector", vector)
            qvec.append(t.cc_read("queue_msix_vector"))
        obs["queue_vectors_before"] = qvec
        t.set_status(t.get_status() | S["DRIVER_OK"])
        _mark(t, "reset")
        t.cc_write("device_status", 0)
        end = time.monotonic() + 5.0
        status = t.cc_read("device_status")
        while status != 0 and time.monotonic() < end:
            time.sleep(0.001)
            status = t.cc_read("device_status")
        obs["status_after_reset"] = status
        obs["config_vector_after"] = t.cc_read("config_msix_vector")
        after = []
        for q in range(min(num, MAX_QUEUES_READ)):
            t.select(q)
            after.append({"index": q, "enable": t.cc_read("queue_enable"),
                          "vector": t.cc_read("queue_msix_vector")})
        obs["queues_after"] = after
        obs["msix_present"] = t.msix is not None
        return obs
    finally:
        dma.close()


def _queue_reset(t, offered):
    """The RING_RESET handshake on queue 0 (when offered)."""
    if not offered & RING_RESET:
        return {"offered": False}
    _mark(t, "queue_reset")
    obs = {"offered": True}
    accepted, kept = _negotiate(t, VERSION_1 | RING_RESET)
    obs["negotiated"] = accepted
    obs["features_ok"] = kept
    if not kept:
        return obs
    obs["after_device_reset"] = t.cc_read("queue_reset")
    dma = DmaMemory()
    try:
        OneShotRing(t, dma, 0)
        t.enable_queue(0)
        t.set_status(t.get_status() | S["DRIVER_OK"])
        t.select(0)
        obs["enabled"] = {"queue_enable": t.cc_read("queue_enable"),
                          "queue_reset": t.cc_read("queue_reset")}
        t.cc_write("queue_reset", 1)
        seen = [t.cc_read("queue_reset")]
        end = time.monotonic() + 5.0
        while seen[-1] != 0 and time.monotonic() < end and len(seen) < 10000:
            seen.append(t.cc_read("queue_reset"))
        obs["queue_reset_reads"] = [seen[0], seen[-1], len(seen)]
        obs["done"] = {"queue_reset": seen[-1], "queue_enable": t.cc_read("queue_enable")}
        # Re-enable after the reset: the queue must come back (driver-8 allows it).
        OneShotRing(t, dma, 0)
        t.enable_queue(0)
        obs["reenabled"] = {"queue_enable": t.cc_read("queue_enable"),
                            "queue_reset": t.cc_read("queue_reset")}
        obs["status"] = t.get_status()
        return obs
    finally:
        dma.close()
        t.reset()


# ------------------------------------------------------------------ ISR and MSI-X
def _live(t, virtio_id, setup=None):
    """Bring the device to DRIVER_OK (so it may signal config changes); ``setup`` runs
    between FEATURES_OK and DRIVER_OK (queue setup) and its result is returned too."""
    wanted = VERSION_1 | (NET_F_STATUS if virtio_id == 1 else 0)
    accepted, kept = _negotiate(t, wanted)
    made = setup() if setup is not None else None
    t.set_status(t.get_status() | S["DRIVER_OK"])
    return {"accepted": accepted, "features_ok": kept, "status": t.get_status()}, made


def _msix_prepare(t, dma, config_vector):
    """MSI-X on, every vector masked and aimed at probe memory; config vector mapped."""
    sink = dma.alloc(4 * t.msix.size)
    for v in range(t.msix.size):
        t.msix.program(v, sink + 4 * v, MSIX_SINK_DATA | v, masked=True)
    t.msix.set_control(enable=True, mask_all=False)
    t.cc_write("config_msix_vector", config_vector)
    return sink


def _msix_release(t):
    if t.msix is not None:
        t.msix.set_control(enable=False, mask_all=False)


def pci_isr_queue(location, virtio_id):
    """MSI-X off: a used buffer sets the ISR queue bit and Status.Interrupt; reading the
    ISR returns it once and clears it."""
    t = PciTransport(location["address"])
    out = {}
    dma = DmaMemory()
    try:
        t.reset()
        _msix_release(t)
        queue, buffers = _request_buffers(virtio_id, dma)
        if buffers is None:
            return {"skipped": f"no self-completing request for device type {virtio_id}",
                    "accesses": _accesses(t)}
        def setup():
            ring = OneShotRing(t, dma, queue)
            t.enable_queue(queue)
            return ring

        out["live"], ring = _live(t, 0, setup)
        _mark(t, "before the request")
        out["status_interrupt_before"] = _status_interrupt(t)
        out["isr_before"] = t.read_isr()
        _mark(t, "request")
        ring.submit(buffers)
        out["used"] = _wait(lambda: ring.used_idx() == 1)
        out["status_interrupt_after_used"] = bool(_wait(lambda: _status_interrupt(t), 1.0))
        _mark(t, "ISR reads")
        out["isr_first"] = t.read_isr()
        out["isr_second"] = t.read_isr()
        out["status_interrupt_after_read"] = _status_interrupt(t)
        t.reset()
        out["accesses"] = _accesses(t)
        return out
    finally:
        dma.close()
        t.close()


def pci_config_event(location, virtio_id, phase, vector=None):
    """A host-raised configuration change, in two phases around the host's action.

    ``arm``: reset, DRIVER_OK; with ``vector`` given MSI-X is enabled with every vector
    masked and config_msix_vector set to ``vector``; otherwise MSI-X stays off.
    ``observe``: wait for the ISR config bit (MSI-X on) or Status.Interrupt (off), then
    read the ISR, Status.Interrupt and the PBA; reset.
    """
    t = PciTransport(location["address"])
    out = {"phase": phase, "vector": vector}
    try:
        if phase == "arm":
            t.reset()
            _msix_release(t)
            out["live"], _ = _live(t, virtio_id)
            if vector is not None:
                dma = DmaMemory()
                try:
                    _msix_prepare(t, dma, vector)
                finally:
                    dma.close()
                out["config_vector"] = t.cc_read("config_msix_vector")
                out["pending_before"] = t.msix.pending_all()
            out["isr_before"] = t.read_isr()
            out["status_interrupt_before"] = _status_interrupt(t)
            out["generation_before"] = t.config_generation()
            out["accesses"] = _accesses(t)
            return out
        msix_on = t.msix is not None and t.msix.enabled()
        out["msix_enabled"] = msix_on
        _mark(t, "waiting for the event")
        if msix_on:
            # The ISR config bit is set whatever the vector: it says the event happened.
            isr = _wait(lambda: t.read_isr())
            out["isr_first"] = isr
            out["pending"] = t.msix.pending_all()
            out["status_interrupt"] = _status_interrupt(t)
        else:
            out["status_interrupt"] = bool(_wait(lambda: _status_interrupt(t)))
            out["isr_first"] = t.read_isr()
        out["isr_second"] = t.read_isr()
        out["status_interrupt_after_read"] = _status_interrupt(t)
        out["generation_after"] = t.config_generation()
        _msix_release(t)
        t.reset()
        out["accesses"] = _accesses(t)
        return out
    finally:
        t.close()


def pci_queue_vector(location, virtio_id):
    """MSI-X on, vectors masked: a used buffer on a queue mapped to NO_VECTOR leaves no
    pending bit; the same queue mapped to vector 1 (the control) does."""
    t = PciTransport(location["address"])
    out = {}
    dma = DmaMemory()
    try:
        t.reset()
        _msix_release(t)
        if t.msix is None:
            return {"skipped": "no MSI-X capability", "accesses": _accesses(t)}
        queue, buffers = _request_buffers(virtio_id, dma)
        if buffers is None:
            return {"skipped": f"no self-completing request for device type {virtio_id}",
                    "accesses": _accesses(t)}
        out["table_size"] = t.msix.size
        for label, vector in (("no_vector", regs.NO_VECTOR), ("control", t.msix.size - 1)):
            t.reset()

            def setup(vector=vector):
                _msix_prepare(t, dma, regs.NO_VECTOR)
                ring = OneShotRing(t, dma, queue)
                t.select(queue)
                t.cc_write("queue_msix_vector", vector)
                t.enable_queue(queue)
                return ring, t.cc_read("queue_msix_vector")

            live, (ring, vector_read) = _live(t, 0, setup)
            out.setdefault("live", live)
            run = {"vector": vector, "vector_read": vector_read}
            run["pending_before"] = t.msix.pending_all()
            _mark(t, f"request ({label})")
            ring.submit(buffers)
            run["used"] = _wait(lambda ring=ring: ring.used_idx() == 1)
            run["isr"] = _wait(lambda: t.read_isr() & regs.PCI_ISR_QUEUE)
            run["pending"] = t.msix.pending_all()
            run["status_interrupt"] = _status_interrupt(t)
            out[label] = run
            _msix_release(t)
        t.reset()
        out["accesses"] = _accesses(t)
        return out
    finally:
        dma.close()
        t.close()


def pci_msix_vectors(location):
    """Vector mapping: table size, mapping every source to chosen vectors, unmapping,
    mapping beyond the table, and what a reset leaves."""
    t = PciTransport(location["address"])
    try:
        t.reset()
        if t.msix is None:
            return {"msix": None, "accesses": _accesses(t)}
        size = t.msix.size
        out = {"msix": t.caps["msix"], "table_size": size}
        num = t.num_queues()
        vectors = sorted({0, size // 2, size - 1})
        _mark(t, "config vector")
        cfg = []
        for v in vectors + [regs.NO_VECTOR, size, 0x7FF if size < 0x7FF else regs.NO_VECTOR]:
            t.cc_write("config_msix_vector", v)
            cfg.append([v, t.cc_read("config_msix_vector")])
        out["config"] = cfg
        _mark(t, "queue vectors")
        queues = []
        for q in range(min(num, 16)):
            t.select(q)
            rows = []
            for v in vectors + [regs.NO_VECTOR, size]:
                t.cc_write("queue_msix_vector", v)
                rows.append([v, t.cc_read("queue_msix_vector")])
            queues.append({"index": q, "writes": rows})
        out["queues"] = queues
        _mark(t, "reset")
        t.cc_write("config_msix_vector", 0)
        for q in range(min(num, 16)):
            t.select(q)
            t.cc_write("queue_msix_vector", 0)
        t.reset()
        out["after_reset"] = {"config": t.cc_read("config_msix_vector"), "queues": []}
        for q in range(min(num, 16)):
            t.select(q)
            out["after_reset"]["queues"].append(t.cc_read("queue_msix_vector"))
        out["accesses"] = _accesses(t)
        return out
    finally:
        t.close()


# ------------------------------------------------------------------ PCI config window
def pci_cfg_window(location):
    """Reads and writes through the PCI configuration access capability, next to direct
    accesses of the same BAR ranges (every structure another capability describes)."""
    t = PciTransport(location["address"])
    try:
        t.reset()
        cap = pcicaps.first(t.caps, "pci_cfg", lambda c: c["cap_len"] >= 20)
        if cap is None:
            return {"window": None, "accesses": _accesses(t)}
        at = cap["at"]

        def window_read(bar, offset, length):
            t.fn.config_write(at + 4, bar, 1)
            t.fn.config_write(at + 8, offset, 4)
            t.fn.config_write(at + 12, length, 4)
            return t.fn.config_read(at + 16, length)

        def window_write(bar, offset, length, value):
            t.fn.config_write(at + 4, bar, 1)
            t.fn.config_write(at + 8, offset, 4)
            t.fn.config_write(at + 12, length, 4)
            t.fn.config_write(at + 16, value, length)

        # A distinctive value in device_feature_select, so a window that lands on the
        # wrong BAR or offset shows it.
        t.cc_write("device_feature_select", 1)
        reads = []
        targets = []
        for c in t.caps["virtio"]:
            if c["type_name"] not in ("common", "notify", "device") or c.get("bar", 9) > 5:
                continue
            if not pcicaps.region_in_bar(c, t.caps["bars"]):
                continue
            if c["type_name"] == "common":
                for name in ("device_feature_select", "device_feature", "num_queues",
                             "device_status"):
                    targets.append((c, COMMON_FIELD(name)))
            elif c["type_name"] == "device" and c["length"] >= 4:
                targets += [(c, (0, 4)), (c, (0, 1))]
            elif c["type_name"] == "notify" and c["length"] >= 2:
                targets.append((c, (0, 2)))
        for c, (off, width) in targets:
            _mark(t, "window read {}+0x{:x}".format(c["type_name"], off))
            through = window_read(c["bar"], c["offset"] + off, width)
            direct = t.fn.bar(c["bar"]).read(c["offset"] + off, width)
            reads.append({"structure": c["type_name"], "cap_at": c["at"], "bar": c["bar"],
                          "offset": c["offset"] + off, "length": width,
                          "window": through, "direct": direct})
        writes = []
        common = t.common.cap
        for name, value in (("device_feature_select", 0), ("queue_select", 1),
                            ("driver_feature_select", 1)):
            off, width = COMMON_FIELD(name)
            _mark(t, f"window write {name}")
            window_write(common["bar"], common["offset"] + off, width, value)
            writes.append({"field": name, "bar": common["bar"],
                           "offset": common["offset"] + off, "length": width,
                           "wrote": value, "direct": t.common.read(off, width)})
        t.reset()
        return {"window": cap, "reads": reads, "writes": writes, "accesses": _accesses(t)}
    finally:
        t.close()


def COMMON_FIELD(name):  # noqa: N802 (reads like the table it indexes)
    return regs.PCI_COMMON[name]


# ------------------------------------------------------------------ legacy (transitional)
def pci_legacy(location):
    """The legacy block in I/O BAR0 next to the modern view of the same device."""
    modern = PciTransport(location["address"])
    out = {}
    try:
        modern.reset()
        _msix_release(modern)
        bars = modern.caps["bars"]
        out["bar0"] = bars[0]
        if bars[0]["kind"] != "io" or not bars[0]["size"]:
            out["legacy"] = None
            out["accesses"] = _accesses(modern)
            return out
        legacy = open_transport(location, legacy=True)
        legacy.fn.trace = legacy.trace = modern.trace  # one trace, in access order
        try:
            out.update(_legacy_observations(modern, legacy))
        finally:
            _msix_release(modern)
            legacy.reset()
            legacy.close()
        modern.reset()
        out["accesses"] = _accesses(modern)
        return out
    finally:
        modern.close()


def _legacy_observations(modern, legacy):
    out = {}
    _mark(modern, "legacy header")
    out["host_features"] = legacy.device_features()
    out["modern_bank0"] = modern.feature_bank(0)
    out["queue_sizes"] = []
    for q in range(min(modern.num_queues(), 8)):
        out["queue_sizes"].append({"index": q, "legacy": legacy.queue_max(q),
                                   "modern": modern.queue_max(q)})
    out["status_readback"] = []
    for value in (S["ACKNOWLEDGE"], S["ACKNOWLEDGE"] | S["DRIVER"]):
        legacy.set_status(value)
        out["status_readback"].append([value, legacy.get_status(), modern.get_status()])
    legacy.reset()

    # Device configuration right after the header: 20 with MSI-X off, 24 with it on.
    length = min(modern.device.length if modern.device else 0,
                 legacy.io.size - regs.PCI_LEGACY_CONFIG_MSIX, 32)
    out["config_length_compared"] = length
    if length > 0:
        _mark(modern, "device config, MSI-X off")
        out["config_msix_off"] = _config_views(modern, legacy, length)
        if modern.msix is not None:
            modern.msix.set_control(enable=True, mask_all=True)
            _mark(modern, "device config, MSI-X on")
            out["config_msix_on"] = _config_views(modern, legacy, length)
            out["vectors_msix_on"] = {"config": legacy.reg_read("ConfigVector"),
                                      "queue": legacy.reg_read("QueueVector")}
            modern.msix.set_control(enable=False, mask_all=False)

    # A legacy driver's negotiation: bits 32..63 cannot be accepted through it.
    _mark(modern, "legacy negotiation")
    legacy.reset()
    # Clear the modern view's driver features first, so what reads back afterwards can
    # only have come through the legacy write.
    for bank in (0, 1):
        modern.cc_write("driver_feature_select", bank)
        modern.cc_write("driver_feature", 0)
    legacy.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
    legacy.set_driver_features(out["host_features"])
    modern.cc_write("driver_feature_select", 1)
    out["modern_driver_bank1_after_legacy"] = modern.cc_read("driver_feature")
    modern.cc_write("driver_feature_select", 0)
    out["modern_driver_bank0_after_legacy"] = modern.cc_read("driver_feature")
    legacy.reset()
    return out


def _config_views(modern, legacy, length):
    """The first ``length`` bytes of device configuration: modern bytes, legacy at each
    width (little-endian, as x86 guests see a legacy device)."""
    base = legacy.config_base()
    views = {"base": base, "modern": [modern.device.read(i, 1) for i in range(length)]}
    for width in (1, 2, 4):
        data = b""
        for off in range(0, length - length % width, width):
            data += legacy.io.read(base + off, width).to_bytes(width, "little")
        views[f"legacy{width}"] = list(data)
    return views


COMMANDS = {
    "pci_caps": pci_caps,
    "pci_common": pci_common,
    "pci_isr_queue": pci_isr_queue,
    "pci_config_event": pci_config_event,
    "pci_queue_vector": pci_queue_vector,
    "pci_msix_vectors": pci_msix_vectors,
    "pci_cfg_window": pci_cfg_window,
    "pci_legacy": pci_legacy,
}
