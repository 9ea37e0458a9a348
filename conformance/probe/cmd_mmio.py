"""Probe commands of the virtio-mmio transport (see commands.py and mmio.py).

Each command owns the device at ``location`` for its duration: it starts with a reset,
makes its observations, and leaves the device reset (unless told it is one step of a
longer sequence, ``keep=True``, whose next step finishes it).  It returns raw register
values plus ``accesses``: every load and store made, in order, for evidence.
"""

import time

from . import regs
from .dma import dma_region
from .mmio import RESET_SECONDS, MmioTransport

FEATURE_BANKS = 8  # DeviceFeaturesSel 0..7: bits 0..255, well past every defined bit
QUEUE_SCAN_LIMIT = 1024  # the most queues any register layout can select
QUEUE_SCAN_GAP = 8  # stop the scan after this many absent queues in a row
SHM_IDS = 8  # SHMSel values surveyed (no shipped device uses any region)
# QueueSel values no device can have: QueueSizeMax must read 0 for them.
QUEUE_SEL_OUT_OF_RANGE = (QUEUE_SCAN_LIMIT, 0xFFFF, 0xFFFFFFFF)

S = regs.STATUS
VERSION_1 = regs.FEATURE_BITS["VIRTIO_F_VERSION_1"]


def _accesses(t):
    return [list(a) for a in t.trace]


def _begin(location):
    t = MmioTransport.at(location)
    t.win.mark("reset at start")
    t.reset()
    return t


def _end(t, result, keep=False):
    if not keep:
        t.win.mark("reset at end")
        result["status_after_final_reset"] = t.reset()
    result["version"] = t.version
    result["accesses"] = _accesses(t)
    t.close()
    return result


def _scan_queues(t, what):
    """Per queue: QueueNumMax and the register that says it is live (QueueReady, or
    QueuePFN on legacy).  Scans until QUEUE_SCAN_GAP absent queues in a row."""
    queues = []
    gap = 0
    for index in range(QUEUE_SCAN_LIMIT):
        t.select_queue(index)
        entry = {"index": index, "max": t.reg("QueueNumMax")}
        for name in what:
            entry[name] = t.reg(name)
        queues.append(entry)
        gap = gap + 1 if entry["max"] == 0 else 0
        if gap >= QUEUE_SCAN_GAP:
            break
    return queues


def mmio_survey(location):
    """Everything a freshly reset device shows without being driven: identity, every
    feature bank, reset values, queue sizes, shared memory ids, config generation."""
    t = _begin(location)
    w = t.win
    out = {"status_after_reset": w.reg("Status")}
    w.mark("identity")
    out["identity"] = {n: w.reg(n) for n in ("MagicValue", "Version", "DeviceID", "VendorID")}
    w.mark("feature banks")
    out["feature_banks"] = [t.feature_bank(bank) for bank in range(FEATURE_BANKS)]
    # Selecting again must give the same words: the selector, not the order, decides.
    out["feature_banks_again"] = [t.feature_bank(bank) for bank in (1, 0)]
    w.mark("reset values")
    out["interrupt_status"] = w.reg("InterruptStatus")
    out["config_generation"] = [w.reg("ConfigGeneration") for _ in range(2)]
    w.mark("queues")
    live = ["QueuePFN"] if t.legacy else ["QueueReady", "QueueReset"]
    out["queues"] = _scan_queues(t, live)
    # Out-of-range selectors, each right after selecting queue 0 (which exists), so a
    # device that ignores the write shows queue 0's size instead of 0.
    w.mark("out-of-range QueueSel")
    out["queue_sel_out_of_range"] = []
    for sel in QUEUE_SEL_OUT_OF_RANGE:
        t.select_queue(0)
        t.select_queue(sel)
        out["queue_sel_out_of_range"].append({"sel": sel, "max": w.reg("QueueNumMax")})
    if not t.legacy:
        w.mark("shared memory regions")
        out["shm"] = []
        for shm in range(SHM_IDS):
            w.set_reg("SHMSel", shm)
            out["shm"].append({
                "id": shm,
                "len": w.reg("SHMLenLow") | (w.reg("SHMLenHigh") << 32),
                "base": w.reg("SHMBaseLow") | (w.reg("SHMBaseHigh") << 32)})
    if t.version == 3:
        # The proposal makes QueueNotify readable (notification layout) and puts its MSI
        # registers at 0x0c0; only a device that says Version 3 gets these reads.
        w.mark("version 3 registers")
        out["v3"] = {"queue_notify": w.reg("QueueNotify"), "reg_0c0": w.read(0x0C0)}
    return _end(t, out)


def _negotiate(t, accept):
    """ACKNOWLEDGE, DRIVER, accept ``accept``, set FEATURES_OK; Status read back."""
    t.set_status(S["ACKNOWLEDGE"])
    t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
    t.set_driver_features(accept)
    t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"] | S["FEATURES_OK"])
    return t.get_status()


def mmio_negotiate(location, invalid_bit=None, keep=False):
    """FEATURES_OK for every offered feature, again after a reset, for VERSION_1 alone,
    and for the offered set plus ``invalid_bit`` (default: the lowest bit at or above 42,
    a reserved range, that the device does not offer).  Legacy devices have no
    FEATURES_OK: only the Status read-back of ACKNOWLEDGE|DRIVER|DRIVER_OK is shown."""
    t = _begin(location)
    w = t.win
    offered = t.device_features()
    out = {"offered": offered, "attempts": []}
    if t.legacy:
        w.mark("legacy: status bits written and read back")
        steps = [S["ACKNOWLEDGE"], S["ACKNOWLEDGE"] | S["DRIVER"]]
        t.set_driver_features(offered & 0xFFFFFFFF)
        steps.append(S["ACKNOWLEDGE"] | S["DRIVER"] | S["DRIVER_OK"])
        out["status_steps"] = []
        for value in steps:
            t.set_status(value)
            out["status_steps"].append({"wrote": value, "read": t.get_status()})
        return _end(t, out, keep)
    if invalid_bit is None:
        invalid_bit = next(b for b in range(42, 64) if not offered >> b & 1)
    # VERSION_1 alone comes last: with keep=True the host can then compare what it
    # recorded as accepted (bit 32 only, written through DriverFeaturesSel 1).
    plan = [("all offered", offered), ("all offered, after reset", offered),
            (f"offered plus bit {invalid_bit} (not offered)", offered | (1 << invalid_bit)),
            ("VERSION_1 only", offered & (1 << VERSION_1))]
    for i, (name, accept) in enumerate(plan):
        if i:
            w.mark("reset before: " + name)
            t.reset()
        w.mark("negotiate: " + name)
        status = _negotiate(t, accept)
        out["attempts"].append({"name": name, "accepted": accept, "status": status,
                                "status_again": t.get_status()})
    out["invalid_bit"] = invalid_bit
    return _end(t, out, keep)


def mmio_reset(location):
    """Put the device in a used-looking state (status bits, queue sizes, addresses,
    ready/PFN on every queue), write 0 to Status, and read everything back."""
    t = _begin(location)
    w = t.win
    out = {"before": {}, "after": {}}
    offered = t.device_features()
    accept = offered if t.legacy else _modern_features(offered)
    status = _negotiate(t, accept) if not t.legacy else None
    out["ring_reset_negotiated"] = bool(not t.legacy and offered >> RING_RESET & 1)
    if t.legacy:
        t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
        t.set_driver_features(offered & 0xFFFFFFFF)
    queues = [q["index"] for q in _scan_queues(t, []) if q["max"]]
    w.mark("arrange: every queue given a size, addresses and ready/PFN")
    # The addresses lie in the probe's RAM above mem=; nothing is notified and
    # DRIVER_OK is never set, so the device has no reason to touch them.
    dma_base, _size = dma_region()
    for q in queues:
        size = min(t.queue_max(q), 8)
        base = dma_base + 0x10000 * (q + 1)
        t.setup_queue(q, size, base, base + 0x1000, base + 0x2000)
        t.enable_queue(q)
    w.mark("observe before reset")
    out["before"]["status"] = status if status is not None else t.get_status()
    out["before"]["queues"] = [{"index": q, "live": t.queue_enabled(q)} for q in queues]
    w.mark("reset: write 0 to Status")
    w.set_reg("Status", 0)
    t0 = time.monotonic()
    status = t.wait_status_zero(RESET_SECONDS)
    out["after"]["reset_seconds"] = round(time.monotonic() - t0, 4)
    out["after"]["status"] = status
    out["after"]["interrupt_status"] = w.reg("InterruptStatus")
    out["after"]["queues"] = []
    for q in queues:
        t.select_queue(q)
        entry = {"index": q, "live": w.reg("QueuePFN" if t.legacy else "QueueReady")}
        if not t.legacy:
            entry["queue_reset"] = w.reg("QueueReset")
        out["after"]["queues"].append(entry)
    return _end(t, out)


COMMANDS = {
    "mmio_survey": mmio_survey,
    "mmio_negotiate": mmio_negotiate,
    "mmio_reset": mmio_reset,
}


RING_RESET = regs.FEATURE_BITS["VIRTIO_F_RING_RESET"]


def _modern_features(offered):
    """What the probe accepts on a modern device: VERSION_1, and RING_RESET if offered
    (so the per-queue reset register has a meaning)."""
    return offered & ((1 << VERSION_1) | (1 << RING_RESET))


def mmio_queue_reset(location):
    """The QueueReset handshake on queue 0 (modern, RING_RESET negotiated): values of
    QueueReset and QueueReady after enabling, while resetting, and after it finished."""
    t = _begin(location)
    w = t.win
    offered = t.device_features()
    out = {"offered": offered}
    if t.legacy or not offered >> RING_RESET & 1:
        out["skipped"] = "legacy layout" if t.legacy else "VIRTIO_F_RING_RESET not offered"
        return _end(t, out)
    out["status"] = _negotiate(t, _modern_features(offered))
    size = min(t.queue_max(0), 8)
    base = dma_region()[0] + 0x100000
    w.mark("arrange: queue 0 set up and enabled")
    t.setup_queue(0, size, base, base + 0x1000, base + 0x2000)
    t.enable_queue(0)
    out["enabled"] = {"QueueReady": w.reg("QueueReady"), "QueueReset": w.reg("QueueReset")}
    w.mark("queue reset: write 1 to QueueReset")
    w.set_reg("QueueReset", 1)
    readings = []
    deadline = time.monotonic() + RESET_SECONDS
    while True:
        value = w.reg("QueueReset")
        readings.append(value)
        if value == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.001)
    out["while_resetting"] = readings[:16]
    out["finished"] = {"QueueReset": readings[-1], "QueueReady": w.reg("QueueReady")}
    return _end(t, out)


def mmio_irq_arm(location):
    """Step 1 of the interrupt sequence: the device set up up to DRIVER_OK (no queue in
    use), then InterruptStatus and ConfigGeneration as they are before any event.
    Leaves the device live for the host to change its configuration."""
    t = _begin(location)
    w = t.win
    offered = t.device_features()
    if t.legacy:
        t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"])
        t.set_driver_features(offered & 0xFFFFFFFF)
        t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"] | S["DRIVER_OK"])
    else:
        _negotiate(t, offered & (1 << VERSION_1))
        t.set_status(S["ACKNOWLEDGE"] | S["DRIVER"] | S["FEATURES_OK"] | S["DRIVER_OK"])
    w.mark("before the event")
    out = {"status": t.get_status(), "interrupt_status": w.reg("InterruptStatus"),
           "config_generation": t.config_generation()}
    return _end(t, out, keep=True)


def mmio_irq_observe(location, hold_seconds=0.2):
    """Step 2, after the host changed the configuration: InterruptStatus, again after
    ``hold_seconds`` (still held without an ACK?), ConfigGeneration, then the ACK of the
    configuration-change bit and InterruptStatus after it.  Ends with a reset."""
    t = MmioTransport.at(location)  # no reset: this continues mmio_irq_arm's sequence
    w = t.win
    w.mark("after the event")
    out = {"status": t.get_status(), "interrupt_status": w.reg("InterruptStatus"),
           "config_generation": t.config_generation()}
    time.sleep(hold_seconds)
    w.mark("still held without an ACK")
    out["interrupt_status_later"] = w.reg("InterruptStatus")
    out["config_generation_again"] = t.config_generation()
    w.mark("ACK the configuration change bit")
    t.ack_interrupt(out["interrupt_status_later"] & 2 or 2)
    out["interrupt_status_after_ack"] = w.reg("InterruptStatus")
    return _end(t, out)


COMMANDS.update({
    "mmio_queue_reset": mmio_queue_reset,
    "mmio_irq_arm": mmio_irq_arm,
    "mmio_irq_observe": mmio_irq_observe,
})


def mmio_reset_only(location):
    """Reset the device (the end of a sequence whose earlier step kept it live)."""
    t = MmioTransport.at(location)
    t.win.mark("reset at end")
    return _end(t, {"status_after_final_reset": t.reset()}, keep=True)


COMMANDS["mmio_reset_only"] = mmio_reset_only
