"""virtio-mmio queue registers at work: does the device use the rings the registers
name, as large as QueueSize says, and only once QueueReady is 1?  And can device
configuration at 0x100 be read a byte at a time?

Virtio Over MMIO / MMIO Device Register Layout (QueueSize, QueueReady, QueueDesc*,
QueueDriver*, QueueDevice*, Config, and the rule about queues not ready) and its
Legacy Interface (QueueSize, QueueAlign, QueuePFN).  The probe (``mmio_queue_layout``,
``mmio_config_widths`` in conformance/probe/cmd_mmio_queues.py) serves real requests
from rings placed where a device reading the registers wrongly would miss them, with
decoys where such a device would write.
"""

import pytest

from conformance.errors import GuestCommandError, NotApplicable
from conformance.probe import requests as probe_requests
from conformance.probe.cmd_mmio_queues import CONFIG_BYTES

LAYOUT = "transport/mmio/mmio-device-register-layout"
LEGACY = "transport/mmio/legacy-interface"
SIZE = f"{LAYOUT}/reg-queuesize-1"
READY = f"{LAYOUT}/reg-queueready-1"
DESC = f"{LAYOUT}/reg-queuedesclow-queuedeschigh-1"
DRIVER = f"{LAYOUT}/reg-queuedriverlow-queuedriverhigh-1"
DEVICE = f"{LAYOUT}/reg-queuedevicelow-queuedevicehigh-1"
NOT_READY = f"{LAYOUT}/7"
L_SIZE = f"{LEGACY}/reg-queuesize-1"
L_ALIGN = f"{LEGACY}/reg-queuealign-1"
L_PFN = f"{LEGACY}/reg-queuepfn-1"
CONFIG = f"{LAYOUT}/reg-config-1"


def _mmio_only(dut):
    if dut.location.bus != "mmio":
        raise NotApplicable(f"a virtio-mmio register check; {dut.transport} has no such "
                            "registers")


def steps(out, *prefixes):
    """The probe's trace from each marker starting with one of ``prefixes`` up to the
    next marker, as one line of text."""
    trace, picked, keep = out.get("trace", []), [], False
    for line in trace:
        if line.startswith("# "):
            keep = any(line[2:].startswith(p) for p in prefixes)
        if keep:
            picked.append(line)
    return "; ".join(picked) or f"(no step {prefixes} in the trace)"


def _in_place(reqs):
    """Requests whose one used element sits at its position in the programmed used ring
    (the probe reads it there: device area + 4 + 8 x (position mod size)), id = head."""
    bad = []
    for n, r in enumerate(reqs):
        used = r["used"]
        if not (r["completed"] and len(used) == 1 and used[0]["pos"] == n
                and used[0]["id"] == r["id"]):
            bad.append({"request": n, "name": r["name"], "head": r["id"],
                        "completed": r["completed"], "used": used})
    return bad


def _buffers_as_described(reqs):
    """Requests whose buffers show the device followed their descriptors: writable ones
    written, readable ones and the canaries around every buffer unchanged."""
    return [{"request": n, "name": r["name"], "written": r["written"],
             "writable_total": r["writable_total"],
             "readable_untouched": r["readable_untouched"], "guards_intact": r["guards_intact"]}
            for n, r in enumerate(reqs)
            if not (r["completed"] and r["readable_untouched"] and r["guards_intact"]
                    and (r["written"] > 0 or r["writable_total"] == 0))]


def _region(r):
    """A decoy region as a reviewer reads it (addresses in hex)."""
    if r is None:
        return None
    return {"addr": hex(r["addr"]), "length": r["length"], "changed": r["changed"],
            "first_changed": hex(r["first_changed"]) if r["first_changed"] else None}


def _decoys_hit(decoys):
    return {k: _region(v) for k, v in decoys.items() if v["changed"]}


def _hexed(d):
    return {k: (hex(v) if isinstance(v, int) and k not in ("index", "size", "max", "align")
                else v) for k, v in d.items()}


@pytest.mark.clause(SIZE, READY, DESC, DRIVER, DEVICE, NOT_READY, L_SIZE, L_ALIGN, L_PFN)
def test_mmio_queue_placement(dut, judge):
    _mmio_only(dut)
    if not probe_requests.supported(dut.profile.virtio_id):
        raise NotApplicable(f"the probe makes no requests of device type "
                            f"{dut.profile.virtio_id} ({dut.profile.name})")
    out = dut.probe("mmio_queue_layout", virtio_id=dut.profile.virtio_id)
    if out["bring_up"].get("features_refused"):
        raise GuestCommandError(f"the device refused the features the probe asked for "
                                f"(0x{out['bring_up']['accepted']:x}): nothing to observe")
    legacy = out["legacy"]
    reqs = out["requests"]
    q = out["queue"]
    size = q["size"]
    decoys = out["decoys"]
    first = reqs[0] if reqs else None
    # Alive: the first request was served, or the device at least worked on it (wrote
    # its buffers, or wrote somewhere a used ring does not belong).  A device that did
    # nothing at all is a harness ERROR: the registers cannot be judged through it.
    alive = first is not None and (first["completed"] or first["written"] > 0
                                   or bool(_decoys_hit(decoys)))
    if not alive:
        control = "with QueueReady 1" if not legacy else "at the legacy layout"
        raise GuestCommandError(f"the first request never completed {control} and the "
                                "device left every buffer and decoy alone (the control): "
                                "the probe cannot drive this queue, so nothing about the "
                                "registers can be told")
    program = steps(out, "program queue")
    served = steps(out, "notify")
    where = _hexed(q)
    ring = out["used_ring"]
    in_place = _in_place(reqs)
    wanted = size + 2
    count_ok = len(reqs) == wanted and ring["idx"] == wanted

    # With no used element where it belongs, nothing else can be counted: only the
    # clauses that say where the used ring goes are judged (FAIL) then.
    stranded = not first["completed"]

    # Size: the ring wrapped; a device counting in a larger size would have looked for
    # heads past the available ring (0xffff there) and written past the used ring.
    size_ok = count_ok and not in_place and not decoys["past_used_ring"]["changed"]
    size_seen = {"requests_served_in_place": len(reqs) - len(in_place),
                 "of": wanted, "used_idx": ring["idx"],
                 "past_used_ring": _region(decoys["past_used_ring"]),
                 "first_out_of_place": in_place[0] if in_place else None}
    size_what = (f"{wanted} requests through a queue of size {size} (QueueNumMax "
                 f"{q['max']}): used elements at position mod {size}, nothing past the "
                 "used ring")
    if not stranded:
        judge.check(L_SIZE if legacy else SIZE, size_ok, what=size_what, observed=size_seen,
                    expected=f"all {wanted} in place, used idx {wanted}, past the ring "
                    "unchanged", detail=f"queue {where} || {program} || {served}")

    default_hit = _decoys_hit({k: v for k, v in decoys.items() if k == "default_used_area"})
    placed = {"out_of_place": in_place[:2] or "none", "used_idx": ring["idx"],
              "default_layout_used_area": _region(decoys.get("default_used_area"))}
    if legacy:
        # The buffers written show the device found the ring at QueuePFN even when it
        # put the used ring elsewhere; nothing at all shows it did not.
        if not stranded or first["written"]:
            judge.check(L_PFN, (not in_place and count_ok) or bool(first["written"]),
                        what=f"requests taken from the ring at QueuePFN 0x{q['desc'] >> 12:x} "
                             f"x GuestPageSize 4096 (desc 0x{q['desc']:x}, avail "
                             f"0x{q['driver']:x})",
                        observed=dict(placed, first_request_bytes_written=first["written"]),
                        expected="every request served from the ring at that base",
                        detail=f"queue {where} || {program} || {served}")
        judge.check(L_ALIGN, not in_place and count_ok and not default_hit,
                    what=f"used ring at QueueAlign {q['align']} (0x{q['device']:x}), not at "
                         f"the 4096 boundary (0x{q['default_used']:x})",
                    observed=placed, expected="used elements at the QueueAlign boundary, the "
                    "4096 one unchanged", detail=f"queue {where} || {program} || {served}")
        return

    judge.check(DEVICE, not in_place and count_ok and not default_hit,
                what=f"used ring at the QueueDevice address 0x{q['device']:x} (not where "
                     f"the contiguous layout puts it, 0x{q['default_used']:x})",
                observed=placed, expected="used elements at the programmed address, the "
                "default place unchanged", detail=f"queue {where} || {program} || {served}")
    nr = out["not_ready"]
    _judge_not_ready(judge, out, nr)
    if stranded:
        return
    not_served = [n for n, r in enumerate(reqs) if not r["completed"]]
    judge.check(DRIVER, not not_served and len(reqs) == wanted,
                what=f"requests offered only in the available ring at the QueueDriver "
                     f"address 0x{q['driver']:x} (the contiguous layout's place, "
                     f"0x{q['default_avail']:x}, offers none)",
                observed={"served": len(reqs) - len(not_served), "of": wanted,
                          "not_served": not_served or "none"},
                expected=f"all {wanted} served", detail=f"queue {where} || {program} || {served}")
    wrong = _buffers_as_described(reqs)
    judge.check(DESC, not wrong,
                what=f"buffers named only by the descriptor table at the QueueDesc address "
                     f"0x{q['desc']:x}: written where writable, untouched where readable",
                observed=wrong[:2] or f"{len(reqs)} requests as described",
                expected="as described", detail=f"queue {where} || {program} || {served}")

    judge.check(READY, q.get("ready_read") == 1 and first["completed"],
                what="the request left alone while QueueReady was 0, offered again after "
                     "a fresh bring-up with QueueReady 1 written before DRIVER_OK",
                observed={"QueueReady read": q.get("ready_read"),
                          "completed": first["completed"], "used": first["used"]},
                expected="QueueReady reads 1, the request served",
                detail=steps(out, "program queue", "DRIVER_OK", "notify " + first["name"]
                             + " (head " + str(first["id"]) + ", avail idx 1)"))


def _judge_not_ready(judge, out, nr):
    untouched = (nr["used_ring_untouched"] and nr["used_idx"] == 0
                 and nr["buffers_changed"] == 0 and nr["guards_intact"]
                 and not _decoys_hit(nr["decoys"]))
    judge.check(NOT_READY, untouched,
                what=f"a request made available and notified with QueueReady "
                     f"{nr['ready_read']} (DRIVER_OK set), watched {nr['settle_seconds']} s",
                observed={"used_ring_untouched": nr["used_ring_untouched"],
                          "used_idx": nr["used_idx"], "buffer_bytes_changed": nr["buffers_changed"],
                          "guards_intact": nr["guards_intact"],
                          "decoys_hit": _decoys_hit(nr["decoys"]) or "none"},
                expected="used ring, buffers and decoys unchanged",
                detail=steps(out, "program queue", "DRIVER_OK", "with QueueReady 0"))


@pytest.mark.clause(CONFIG)
def test_mmio_config_byte_access(dut, judge):
    _mmio_only(dut)
    length = CONFIG_BYTES.get(dut.profile.virtio_id)
    if length is None:
        raise NotApplicable(f"device type {dut.profile.virtio_id} ({dut.profile.name}) has "
                            "no device configuration the probe knows the size of")
    out = dut.probe("mmio_config_widths", length=length)
    b = out["width_1"]
    mismatches = []
    for width in (2, 4):
        for n, value in enumerate(out[f"width_{width}"]):
            off = n * width
            from_bytes = int.from_bytes(bytes(b[off:off + width]), "little")
            if value != from_bytes:
                mismatches.append({"offset": hex(0x100 + off), "width": width,
                                   "read": hex(value), "bytes": hex(from_bytes)})
    if out["width_1_again"] != b:
        mismatches.append({"bytes read twice": [b, out["width_1_again"]]})
    judge.check(CONFIG, not mismatches,
                what=f"device configuration 0x100..0x{0x100 + length - 1:x} read a byte at a "
                     "time vs 16-bit and 32-bit reads",
                observed=mismatches[:4] or [hex(x) for x in b], expected="the same bytes",
                detail="; ".join(out["trace"]))
