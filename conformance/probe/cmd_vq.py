"""Probe commands of the basic facilities: virtqueues, notifications, device status.

Each command resets the device it drives first and leaves it reset, except
``vq_config_arm``, which leaves the device running so that the host can change its
configuration before ``vq_config_observe`` looks (and resets it).  Every command
returns raw observations: ring contents, bytes written, interrupts seen, and the
register accesses behind them; the checks decide.
"""

import time

from . import device as devmod
from . import requests as reqmod
from .device import (
    DRIVER_OK,
    EVENT_IDX,
    INDIRECT_DESC,
    NEEDS_RESET,
    RING_PACKED,
    RING_RESET,
    USED_SECONDS,
    Device,
)
from .regs import VRING

POISON = 0xDEADBEEF  # written into used elements ahead of the device


def _open(location, transport, virtio_id):
    from .dma import DmaMemory

    if not reqmod.supported(virtio_id):
        raise ValueError(f"no requests known for virtio device type {virtio_id}")
    mem = DmaMemory()
    t = devmod.open_transport(location, transport)
    return Device(t, mem, legacy=devmod.is_legacy(t, transport)), mem


def _finish(dev, out):
    out["status_final_reset"] = dev.reset()
    out["trace"] = dev.trace()
    dev.close()
    return out


def _poison_used(q, count=4):
    """Mark the next used elements so an element not yet written can be told apart."""
    if q.kind != "split":
        return
    for k in range(count):
        base = q.used + 4 + 8 * ((q.last_used + k) % q.size)
        q.mem.store(base, POISON, 4)
        q.mem.store(base + 4, POISON, 4)


def _room(q):
    return len(q.free) if q.kind == "split" else q.free_slots


def _run_one(dev, req, indirect=False, expect_used=True, direct=0, **kw):
    """Post one request, notify, wait for it; the observation of that one request."""
    q = dev.queues[req.queue]
    if _room(q) < (1 + direct if indirect else len(req.segments())):
        # Earlier requests the device never used still hold their descriptors.
        return {"name": req.name, "queue": req.queue, "skipped": "no room left in the ring"}
    _poison_used(q)
    dev.clear_interrupts()
    before_idx = q.used_idx() if q.kind == "split" else None
    ident = dev.submit(q, req.segments(), indirect=indirect, notify=False, direct=direct,
                       **kw)
    table_before = q.snapshot() if q.kind == "split" else None
    inner = q.indirect_tables.get(ident) if q.kind == "split" else None
    inner_before = q.mem.read(inner[0], 16 * inner[1]) if inner else None
    dev.mark(f"notify {req.name} (queue {req.queue})")
    dev.notify(q.index)
    done = q.wait_used(1, USED_SECONDS if expect_used else devmod.SETTLE_SECONDS)
    # The first look at the element happens right after the index moved.
    used = q.reap()
    obs = req.observe()
    obs.update({"id": ident, "indirect": indirect, "completed": done, "used": used,
                "segments": [[a, n, w] for a, n, w in req.segments()]})
    if q.kind == "split":
        obs["used_idx_before"] = before_idx
        obs["used_idx_after"] = q.used_idx()
        obs["table_untouched"] = q.snapshot() == table_before
        if inner:
            obs["direct"] = inner[2]
            obs["indirect_table_untouched"] = q.mem.read(inner[0], 16 * inner[1]) == inner_before
        obs["used_flags"] = q.used_flags()
    if done:
        obs["interrupt"] = dev.wait_interrupt("used", 1.0)
    return obs


def vq_requests(location, transport, virtio_id, ring="split", indirect=False, size=None,
                rounds=1):
    """Real requests on every queue the device type has: what the device did with them.

    ``ring`` "packed" negotiates VIRTIO_F_RING_PACKED (when offered); ``indirect`` adds
    each request once more through an indirect table (when VIRTIO_F_INDIRECT_DESC is
    offered); ``rounds`` repeats the list so a small ring wraps.
    """
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name, "ring": ring}
    try:
        want = wanted | (RING_PACKED if ring == "packed" else 0)
        want |= INDIRECT_DESC if indirect else 0
        sizes = {i: size for i in queues} if size else None
        out["bring_up"] = dev.bring_up(want, queues, sizes=sizes)
        out["negotiated_packed"] = dev.has(RING_PACKED)
        out["negotiated_indirect"] = dev.has(INDIRECT_DESC)
        if ring == "packed" and not dev.has(RING_PACKED):
            out["skipped"] = "VIRTIO_F_RING_PACKED not offered"
            return out
        if out["bring_up"].get("features_refused"):
            return out
        out["queues"] = {str(i): dev.queues[i].state() for i in queues}
        results = []
        for _ in range(rounds):
            for req in build(mem, dev):
                results.append(_run_one(dev, req))
            if dev.has(INDIRECT_DESC):  # the whole chain in an indirect table
                for req in build(mem, dev):
                    results.append(_run_one(dev, req, indirect=True))
        if dev.has(RING_PACKED):
            out["unpublished"] = _unpublished(dev, mem, build)
        out["batch"] = _batch(dev, mem, build)
        # Last, because a device that mishandles them may stop serving the queue: chains
        # of ordinary descriptors that end in an indirect one (split rings).
        if dev.has(INDIRECT_DESC) and not dev.has(RING_PACKED):
            for req in build(mem, dev):
                if len(req.segments()) > 1:
                    results.append(_run_one(dev, req, indirect=True, direct=1))
        if dev.has(RING_PACKED):
            out["decoy_ids"] = _decoy_ids(dev, mem, build)
        out["requests"] = [r for r in results if "skipped" not in r]
        out["skipped_requests"] = [r for r in results if "skipped" in r]
        out["queues_after"] = {str(i): dev.queues[i].state() for i in queues}
    finally:
        _finish(dev, out)
    return out


def _decoy_ids(dev, mem, build):
    """Packed: a chain whose earlier descriptors carry another id than its last one (the
    buffer id belongs in the last).  Which id comes back?  Kept apart and last: a device
    that answers with the wrong id leaves the driver unable to skip the chain."""
    reqs = [r for r in build(mem, dev) if len(r.segments()) > 1]
    if not reqs:
        return {"skipped": "no request of this device type has two buffers"}
    obs = _run_one(dev, reqs[0], decoy_ids=True)
    q = dev.queues[reqs[0].queue]
    obs["used_raw"] = q.read_desc((q.next_used) % q.size) if not obs.get("used") else None
    return obs


def _unpublished(dev, mem, build):
    """Packed: a chain written in full except its head's AVAIL flag, then notified; the
    device must leave it alone until the flag flips."""
    req = build(mem, dev, variety=False)[0]
    q = dev.queues[req.queue]
    dev.clear_interrupts()
    ident = q.add(req.segments(), publish=False)
    dev.mark("notify with the head's flags not yet flipped")
    dev.notify(q.index)
    time.sleep(0.3)
    early = {"consumed": q.pending() > 0, "request": req.observe()}
    q.publish()
    dev.notify(q.index)
    done = q.wait_used(1, USED_SECONDS)
    return {"id": ident, "before_flip": early, "completed_after_flip": done,
            "used": q.reap()}


def _batch(dev, mem, build, count=3):
    """Several requests made available at once, one notification: each used once."""
    by_queue = {}
    posted = []
    for _ in range(count):
        r = build(mem, dev, variety=False)[0]
        q = dev.queues[r.queue]
        room = len(q.free) if q.kind == "split" else q.free_slots
        if len(r.segments()) > room:
            break
        by_queue[r.queue] = q
        posted.append({"name": r.name, "queue": r.queue,
                       "id": dev.submit(q, r.segments(), notify=False)})
    for q in by_queue.values():
        dev.notify(q.index)
    used = []
    for qi, q in by_queue.items():
        want = sum(1 for p in posted if p["queue"] == qi)
        q.wait_used(want, USED_SECONDS)
        time.sleep(devmod.SETTLE_SECONDS)  # anything extra would show up here
        used += [dict(u, queue=qi) for u in q.reap()]
    return {"posted": posted, "used": used}


def vq_suppression(location, transport, virtio_id, event_idx=False):
    """Used-buffer notification suppression, and spurious driver notifications.

    Without EVENT_IDX: the NO_INTERRUPT flag on (used_event pointing at the next entry,
    which must be disregarded), then off (used_event far away).  With EVENT_IDX:
    used_event at the next entry with the flag on (the flag must be disregarded), then
    used_event out of reach.  Each step: one request, and every interrupt cause seen.
    """
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name, "event_idx_asked": event_idx}
    no_int = VRING["AVAIL_F_NO_INTERRUPT"]
    try:
        out["bring_up"] = dev.bring_up(wanted | (EVENT_IDX if event_idx else 0), queues)
        out["negotiated_event_idx"] = dev.has(EVENT_IDX)
        if event_idx and not dev.has(EVENT_IDX):
            out["skipped"] = "VIRTIO_F_EVENT_IDX not offered"
            return out
        if out["bring_up"].get("features_refused"):
            return out
        if not event_idx:
            plan = [("flag-set", no_int, 0), ("flag-clear", 0, 0x8000)]
        else:
            plan = [("event-at-next-flag-set", no_int, 0), ("event-out-of-reach", 0, 5)]
        steps = []
        for label, flags, event_delta in plan:
            req = build(mem, dev, variety=False)[0]
            q = dev.queues[req.queue]
            q.set_avail_flags(flags)
            q.set_used_event(q.last_used + event_delta)
            dev.clear_interrupts()
            dev.submit(q, req.segments(), notify=False)
            dev.mark(f"step {label}: avail.flags={flags} "
                     f"used_event={(q.last_used + event_delta) & 0xFFFF}")
            dev.notify(q.index)
            done = q.wait_used(1, USED_SECONDS)
            seen = dev.watch_interrupts(0.3 if done else 0.0)
            steps.append({"step": label, "avail_flags": flags,
                          "used_event": (q.last_used + event_delta) & 0xFFFF,
                          "used_idx_before": q.last_used, "completed": done,
                          "used": q.reap(), "interrupt": seen["used"],
                          "used_flags": q.used_flags(), "avail_event": q.avail_event()})
        out["steps"] = steps
        out["spurious"] = _spurious(dev, mem, build)
    finally:
        _finish(dev, out)
    return out


def _spurious(dev, mem, build):
    """Notifications with nothing new to take, then a real request: still served?"""
    req = build(mem, dev, variety=False)[0]
    q = dev.queues[req.queue]
    q.set_avail_flags(0)
    q.set_used_event(q.last_used)
    idx_before = q.used_idx()
    for i in range(5):
        dev.mark(f"spurious notify {i}")
        dev.notify(q.index)
    time.sleep(devmod.SETTLE_SECONDS)
    idx_after_spurious = q.used_idx()
    dev.submit(q, req.segments())
    done = q.wait_used(1, USED_SECONDS)
    return {"used_idx_before": idx_before, "used_idx_after_spurious": idx_after_spurious,
            "completed_after": done, "used": q.reap(), "status": dev.t.get_status()}


def vq_before_driver_ok(location, transport, virtio_id):
    """A request made available and notified before DRIVER_OK, then after it."""
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name}
    try:
        out["bring_up"] = dev.bring_up(wanted, queues, driver_ok=False)
        if out["bring_up"].get("features_refused"):
            return out
        req = build(mem, dev, variety=False)[0]
        q = dev.queues[req.queue]
        dev.clear_interrupts()
        dev.submit(q, req.segments(), notify=False)
        dev.mark("notify before DRIVER_OK")
        dev.notify(q.index)
        time.sleep(0.3)
        early = req.observe()
        seen = dev.watch_interrupts(0.1)
        out["before"] = {"status": dev.t.get_status(), "used_idx": q.used_idx(),
                         "consumed": q.pending() > 0, "interrupt": seen["used"],
                         "buffers_written": any(b["changed"] for b in early["buffers"]
                                                if b["writable"]),
                         "request": early}
        q.reap()
        out["status_after_driver_ok"] = dev.driver_ok()
        dev.notify(q.index)
        done = q.wait_used(1, USED_SECONDS) if not out["before"]["consumed"] else True
        out["after"] = {"completed": done, "used_idx": q.used_idx(),
                        "used": q.reap(), "request": req.observe()}
    finally:
        _finish(dev, out)
    return out


def vq_reset(location, transport, virtio_id):
    """Reset with work pending: status, then no ring activity and no interrupt after.

    A request completes (the control); a second is made available without a notification;
    the device is reset; then the queue is notified anyway.  Afterwards a fresh bring-up
    must start from a clean state (first used entry at position 0, index 1).
    """
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name}
    try:
        out["bring_up"] = dev.bring_up(wanted, queues)
        if out["bring_up"].get("features_refused"):
            return out
        out["control"] = _run_one(dev, build(mem, dev, variety=False)[0])
        req = build(mem, dev, variety=False)[0]
        q = dev.queues[req.queue]
        dev.submit(q, req.segments(), notify=False)
        ring_before = mem.read(q.desc, q.total)
        dev.mark("reset with a buffer pending")
        status = dev.t.reset()
        out["status_after_reset"] = status if status is not None else dev.t.get_status()
        dev.t.notify(q.index)
        seen = dev.watch_interrupts(0.4)
        out["after_reset"] = {"ring_untouched": mem.read(q.desc, q.total) == ring_before,
                              "used_idx": q.used_idx(), "interrupt": seen["used"],
                              "config_interrupt": seen["config"],
                              "request": req.observe(), "status": dev.t.get_status()}
        # A fresh start on new rings: the device must not carry its old positions over.
        dev.bring_up(wanted, queues)
        fresh = _run_one(dev, build(mem, dev, variety=False)[0])
        out["fresh"] = fresh
    finally:
        _finish(dev, out)
    return out


def vq_needs_reset(location, transport, virtio_id):
    """A malformed chain (a next index beyond the queue) after DRIVER_OK: does the device
    set DEVICE_NEEDS_RESET, and then send a configuration change notification?"""
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name}
    try:
        out["bring_up"] = dev.bring_up(wanted, queues)
        if out["bring_up"].get("features_refused"):
            return out
        # A well-formed request first: a device that serves nothing proves nothing here.
        out["control"] = _run_one(dev, build(mem, dev, variety=False)[0])
        req = build(mem, dev, variety=False)[0]
        q = dev.queues[req.queue]
        seg = req.segments()[0]
        flags = (VRING["DESC_F_WRITE"] if seg[2] else 0) | VRING["DESC_F_NEXT"]
        dev.clear_interrupts()
        q.add_raw([(seg[0], seg[1], flags, q.size + 3)])
        dev.mark(f"notify a chain whose next index is {q.size + 3} (queue size {q.size})")
        dev.notify(q.index)
        deadline = time.monotonic() + 1.0
        status = dev.t.get_status()
        while not status & NEEDS_RESET and time.monotonic() < deadline:
            time.sleep(0.01)
            status = dev.t.get_status()
        seen = dev.watch_interrupts(0.3)
        out.update({"status": status, "needs_reset": bool(status & NEEDS_RESET),
                    "config_interrupt": seen["config"], "used_interrupt": seen["used"],
                    "used_idx": q.used_idx(), "driver_ok_was_set": bool(status & DRIVER_OK)})
    finally:
        _finish(dev, out)
    return out


CONFIG_BYTES = {1: 8, 2: 8, 5: 8}  # how much configuration the config-change checks read


def vq_config_arm(location, transport, virtio_id, driver_ok):
    """Bring the device up (to DRIVER_OK or just short of it) and leave it running: the
    host changes its configuration next, then ``vq_config_observe`` looks."""
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name}
    try:
        out["bring_up"] = dev.bring_up(wanted, queues, driver_ok=driver_ok)
        dev.clear_interrupts()
        out["generation"] = dev.t.config_generation()
        out["config"] = dev.config_bytes(CONFIG_BYTES.get(virtio_id, 8))
        out["generation_after_read"] = dev.t.config_generation()
        out["status"] = dev.t.get_status()
        out["trace"] = dev.trace()
    finally:
        dev.close()  # not reset: the host acts on the running device
    return out


def vq_config_observe(location, transport, virtio_id, driver_ok):
    """After a host-side change: the interrupt cause, generation and new values.

    ``driver_ok`` repeats what ``vq_config_arm`` was given (so the two observations are
    told apart in a recording)."""
    dev, mem = _open(location, transport, virtio_id)
    out = {"armed_with_driver_ok": driver_ok}
    try:
        seen = dev.wait_interrupt("config", 1.0)
        out["config_interrupt"] = seen or bool(dev.irq_config)
        out["used_interrupt"] = bool(dev.irq_used)
        out["generation"] = dev.t.config_generation()
        out["config"] = dev.config_bytes(CONFIG_BYTES.get(virtio_id, 8))
        out["generation_after_read"] = dev.t.config_generation()
        out["status"] = dev.t.get_status()
    finally:
        _finish(dev, out)
    return out


def vq_queue_reset(location, transport, virtio_id):
    """Virtqueue reset (VIRTIO_F_RING_RESET): the queue's state back to defaults, and a
    re-enabled queue using the size and rings written after the reset."""
    dev, mem = _open(location, transport, virtio_id)
    name, queues, wanted, build = reqmod.DEVICES[virtio_id]
    out = {"device": name}
    try:
        out["bring_up"] = dev.bring_up(wanted | RING_RESET, queues)
        out["negotiated_ring_reset"] = dev.has(RING_RESET)
        if not dev.has(RING_RESET):
            out["skipped"] = "VIRTIO_F_RING_RESET not offered"
            return out
        if dev.legacy:
            out["skipped"] = "the legacy interface has no virtqueue reset"
            return out
        first = build(mem, dev, variety=False)[0]
        out["before"] = _run_one(dev, first)
        qi = first.queue
        old = dev.queues[qi]
        # Work left pending on the old rings: after the queue reset it must stay untouched.
        pending = build(mem, dev, variety=False)[0]
        dev.submit(old, pending.segments(), notify=False)
        ring_before = mem.read(old.desc, old.total) if old.kind == "split" else None
        dev.mark(f"queue reset {qi}")
        out["reset_result"] = devmod.reset_queue(dev.t, qi)
        dev.notify(qi)
        seen = dev.watch_interrupts(0.3)
        out["after_reset"] = {"interrupt": seen["used"], "request": pending.observe(),
                              "ring_untouched": (mem.read(old.desc, old.total) == ring_before
                                                 if ring_before is not None else None),
                              "queue_max": dev.t.queue_max(qi)}
        new_size = max(2, min(old.size // 2, 16))
        dev.setup_queue(qi, new_size)
        out["new_size"] = new_size
        out["after_enable"] = _run_one(dev, build(mem, dev, variety=False)[0])
        out["after_enable"]["queue"] = dev.queues[qi].state()
    finally:
        _finish(dev, out)
    return out


COMMANDS = {
    "vq_requests": vq_requests,
    "vq_suppression": vq_suppression,
    "vq_before_driver_ok": vq_before_driver_ok,
    "vq_reset": vq_reset,
    "vq_needs_reset": vq_needs_reset,
    "vq_config_arm": vq_config_arm,
    "vq_config_observe": vq_config_observe,
    "vq_queue_reset": vq_queue_reset,
}
