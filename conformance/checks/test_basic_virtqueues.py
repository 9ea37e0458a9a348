"""Virtqueues: what the device does with real buffers on split and packed rings.

Basic Facilities / Split Virtqueues and Packed Virtqueues (descriptor table, used ring,
indirect descriptors, message framing, notification suppression), on every transport.
The probe (``vq_requests``, ``vq_suppression``) makes real requests of the device type
(entropy, block, console, network, balloon, SCSI) with canaries around every buffer.
"""

import pytest

from conformance.errors import GuestCommandError, NotApplicable
from conformance.probe import requests as probe_requests

SPLIT = "basic/split-virtqueues"
READABLE = f"{SPLIT}/the-virtqueue-descriptor-table/1"
TABLE = f"{SPLIT}/the-virtqueue-descriptor-table/2"
USED_ELEM_FIRST = f"{SPLIT}/the-virtqueue-used-ring/1"
USED_DATA_FIRST = f"{SPLIT}/the-virtqueue-used-ring/2"
FRAMING = f"{SPLIT}/message-framing/1"
INDIRECT_WRITE_FLAG = f"{SPLIT}/indirect-descriptors/1"
INDIRECT_CHAIN = f"{SPLIT}/indirect-descriptors/2"
USED_SUPP = f"{SPLIT}/used-buffer-notification-suppression"
AVAIL_SUPP = f"{SPLIT}/available-buffer-notification-suppression"
LEGACY_LAYOUT = f"{SPLIT}/legacy-interfaces-a-note-on-virtqueue-layout/prose-2"
LEGACY_ENDIAN = f"{SPLIT}/legacy-interfaces-a-note-on-virtqueue-endianness/prose-1"
MMIO_NOTIFY = "transport/mmio/mmio-device-register-layout/reg-queuenotify-1"

PACKED = "basic/packed-virtqueues"
P_READABLE = f"{PACKED}/the-virtqueue-descriptor-table/1"
P_AVAIL_FLAG = f"{PACKED}/the-virtqueue-descriptor-table/2"
P_USED_ORDER = f"{PACKED}/packed-virtqueues/2"
P_CHAIN = f"{PACKED}/scatter-gather-support/1"

POISON = 0xDEADBEEF  # what the probe writes into used elements ahead of the device
# Entropy data is random: a last byte that happens to equal the fill pattern looks
# unwritten (1 in 256 per byte), so that many trailing bytes get the benefit of the doubt.
RANDOM_DATA_SLACK = 2


def _need_requests(dut):
    if not probe_requests.supported(dut.profile.virtio_id):
        raise NotApplicable(f"the probe makes no requests of device type "
                            f"{dut.profile.virtio_id} ({dut.profile.name})")


def _trace(out, limit=60):
    return "; ".join(out.get("trace", [])[-limit:])


def _short(r):
    """One request, as a reviewer needs to see it."""
    return {k: r.get(k) for k in ("name", "id", "indirect", "completed", "used", "written",
                                  "writable_total", "readable_untouched", "guards_intact",
                                  "table_untouched", "used_idx_before", "used_idx_after",
                                  "interrupt", "data_matches", "direct",
                                  "indirect_table_untouched") if k in r}


def _all(judge, clause, items, ok, *, what, expected, out):
    """One judgment over many requests: the first bad one is the observation shown."""
    bad = [r for r in items if not ok(r)]
    observed = _short(bad[0]) if bad else f"{len(items)} request(s) as expected"
    return judge.check(clause, not bad, what=what, observed=observed, expected=expected,
                       detail=_trace(out))


def _exactly_once(r):
    return r["completed"] and len(r["used"]) == 1 and r["used"][0]["id"] == r["id"]


def _len_within_written(out):
    slack = RANDOM_DATA_SLACK if out["device"] == "entropy" else 0
    return lambda r: all(u["len"] <= r["written"] + slack for u in r["used"])


def _probe_requests(dut, **args):
    out = dut.probe("vq_requests", transport=dut.transport, virtio_id=dut.profile.virtio_id,
                    **args)
    if out["bring_up"].get("features_refused"):
        raise GuestCommandError(f"the device refused the features the probe asked for "
                                f"(0x{out['bring_up']['accepted']:x}): nothing to observe")
    if out.get("requests") is not None and not any(r["completed"] for r in out["requests"]):
        # Not one request served: the probe could not drive the data path at all, which
        # says nothing about any one ring rule.
        raise GuestCommandError("no request completed: the probe cannot drive this "
                                "device's queues (see the probe output)")
    return out


@pytest.mark.clause(READABLE, TABLE, USED_ELEM_FIRST, USED_DATA_FIRST, FRAMING,
                    INDIRECT_WRITE_FLAG, INDIRECT_CHAIN, f"{USED_SUPP}/3", f"{AVAIL_SUPP}/1",
                    LEGACY_LAYOUT, LEGACY_ENDIAN, MMIO_NOTIFY)
def test_split_ring_requests(dut, judge):
    _need_requests(dut)
    out = _probe_requests(dut, ring="split", indirect=True, size=16, rounds=2)
    # Chains ending in an indirect descriptor are judged on their own clause only: a
    # device that mishandles them would otherwise fail every clause at once.
    chained = [r for r in out["requests"] if r["indirect"] and r.get("direct")]
    reqs = [r for r in out["requests"] if r not in chained]
    done = [r for r in reqs if r["completed"]]

    _all(judge, FRAMING, reqs, lambda r: _exactly_once(r) and r.get("data_matches", True),
         what="every request, however split over descriptors, used once with its head id "
              "(and read data where known)", expected="completed, one used element, id = head",
         out=out)
    batch = out["batch"]
    used_ids = sorted(u["id"] for u in batch["used"])
    judge.check(FRAMING, used_ids == sorted(p["id"] for p in batch["posted"]),
                what="requests made available together: each used exactly once",
                observed=used_ids, expected=sorted(p["id"] for p in batch["posted"]),
                detail=_trace(out))
    _all(judge, READABLE, done, lambda r: r["readable_untouched"] and r["guards_intact"],
         what="device-readable buffers and the bytes around every buffer unchanged",
         expected="unchanged", out=out)
    _all(judge, TABLE, done,
         lambda r: r["table_untouched"] and r.get("indirect_table_untouched", True),
         what="descriptor table, indirect tables and available ring unchanged by the device",
         expected="unchanged", out=out)
    _all(judge, USED_ELEM_FIRST, done,
         lambda r: all(POISON not in (u["id"], u["len"]) for u in r["used"]),
         what="used element complete when the used index showed it",
         expected=f"id and len written (not the 0x{POISON:x} placed ahead)", out=out)
    _all(judge, USED_DATA_FIRST, done, _len_within_written(out),
         what="reported length within the bytes found written when the index moved",
         expected="len <= bytes written", out=out)
    _all(judge, f"{USED_SUPP}/3", done, lambda r: r.get("interrupt") is True,
         what="used-buffer notification with avail flags 0 (no EVENT_IDX)",
         expected="interrupt seen", out=out)
    _all(judge, f"{AVAIL_SUPP}/1", done, lambda r: r.get("used_flags") in (0, 1),
         what="used ring flags without EVENT_IDX", expected="0 or 1", out=out)

    indirect = [r for r in reqs if r["indirect"]]  # indirect at the head
    if not out["negotiated_indirect"]:
        for c in (INDIRECT_WRITE_FLAG, INDIRECT_CHAIN):
            judge.na(c, "VIRTIO_F_INDIRECT_DESC not offered")
    else:
        # (Reported lengths are judged on used-ring/2 above, once.)
        _all(judge, INDIRECT_WRITE_FLAG, indirect,
             lambda r: _exactly_once(r) and r.get("data_matches", True)
             and r["indirect_table_untouched"],
             what="indirect descriptors (at the head) carrying the WRITE flag: the flag "
                  "disregarded, the table read and not written",
             expected="used once, table untouched", out=out)
        if chained:
            _all(judge, INDIRECT_CHAIN, chained,
                 lambda r: _exactly_once(r) and r.get("data_matches", True)
                 and r["indirect_table_untouched"]
                 and (r["written"] > 0 or r["writable_total"] == 0),
                 what="a chain of ordinary descriptors ending in an indirect one: buffers "
                      "taken from the indirect table",
                 expected="used once, data in the buffers (not in the table)", out=out)
        else:
            judge.na(INDIRECT_CHAIN, "no request of this device type has two buffers")

    if dut.transport in ("mmio-legacy", "pci-transitional"):
        _all(judge, LEGACY_LAYOUT, reqs, lambda r: r["completed"],
             what="requests served from rings at the legacy layout", expected="completed",
             out=out)
        _all(judge, LEGACY_ENDIAN, done, _exactly_once,
             what="used elements in the guest's (little-endian) byte order",
             expected="id = head", out=out)
    if dut.transport.startswith("mmio"):
        _all(judge, MMIO_NOTIFY, reqs, lambda r: r["completed"],
             what="a QueueNotify write makes the device take the queue's buffers",
             expected="completed", out=out)


@pytest.mark.clause(P_READABLE, P_AVAIL_FLAG, P_USED_ORDER, P_CHAIN)
def test_packed_ring_requests(dut, judge):
    _need_requests(dut)
    if dut.transport in ("mmio-legacy", "pci-transitional"):
        raise NotApplicable("packed rings need VIRTIO_F_VERSION_1: not on a legacy interface")
    # A small ring, so that it wraps: the used wrap counter is seen with both values.
    out = _probe_requests(dut, ring="packed", indirect=True, size=8, rounds=2)
    if not out["negotiated_packed"]:
        raise NotApplicable("the device does not offer VIRTIO_F_RING_PACKED "
                            "(QEMU offers it with packed=on)")
    reqs = out["requests"]
    done = [r for r in reqs if r["completed"]]
    _all(judge, P_USED_ORDER, reqs, lambda r: r["completed"] and len(r["used"]) == 1,
         what="each used descriptor at the next ring slot, flags matching the used wrap "
              "counter (the ring wraps)", expected="found where and as expected", out=out)
    wraps = sorted({u["wrap"] for r in done for u in r["used"]})
    judge.check(P_USED_ORDER, wraps == [0, 1], what="used descriptors seen with both wrap "
                "counter values", observed=wraps, expected=[0, 1], detail=_trace(out))
    _all(judge, P_CHAIN, reqs, lambda r: _exactly_once(r) and r.get("data_matches", True),
         what="chain consumed as made available: buffer id from its last descriptor "
              "(earlier ones carry another id), data in chain order",
         expected="used id = buffer id", out=out)
    batch = out["batch"]
    used_ids = sorted(u["id"] for u in batch["used"])
    judge.check(P_CHAIN, used_ids == sorted(p["id"] for p in batch["posted"]),
                what="buffers made available together: each used exactly once",
                observed=used_ids, expected=sorted(p["id"] for p in batch["posted"]),
                detail=_trace(out))
    decoy = out.get("decoy_ids", {})
    if decoy and "skipped" not in decoy:
        used = decoy["used"][0] if decoy["used"] else None
        judge.check(P_CHAIN, decoy["completed"] and used is not None
                    and used["id"] == decoy["id"],
                    what="a chain whose earlier descriptors carry another id than its last "
                         "one: the used buffer id must be the last descriptor's (where the "
                         "packed layout puts a chain's buffer id)",
                    observed=used, expected={"id": decoy["id"]}, detail=_trace(out))
    _all(judge, P_READABLE, done, lambda r: r["readable_untouched"] and r["guards_intact"],
         what="device-readable buffers and the bytes around every buffer unchanged",
         expected="unchanged", out=out)
    early = out["unpublished"]
    judge.check(P_AVAIL_FLAG, not early["before_flip"]["consumed"]
                and early["before_flip"]["request"]["written"] == 0
                and early["completed_after_flip"],
                what="a chain whose head AVAIL flag was not yet flipped, notified",
                observed=early, expected="left alone until the flag flipped, then used",
                detail=_trace(out))


def _steps(out):
    return {s["step"]: s for s in out["steps"]}


@pytest.mark.clause(f"{USED_SUPP}/1", f"{USED_SUPP}/2", f"{USED_SUPP}/3", f"{AVAIL_SUPP}/1",
                    f"{AVAIL_SUPP}/5")
def test_notification_suppression_by_flags(dut, judge):
    _need_requests(dut)
    out = dut.probe("vq_suppression", transport=dut.transport,
                    virtio_id=dut.profile.virtio_id, event_idx=False)
    steps = _steps(out)
    quiet, loud = steps["flag-set"], steps["flag-clear"]
    for s in (quiet, loud):
        if not s["completed"]:
            raise GuestCommandError(f"request of step {s['step']} never completed: "
                                    "nothing to judge")
    judge.check(f"{USED_SUPP}/2", not quiet["interrupt"],
                what="used-buffer notification with VIRTQ_AVAIL_F_NO_INTERRUPT set",
                observed=quiet, expected="no interrupt", detail=_trace(out))
    judge.check(f"{USED_SUPP}/3", loud["interrupt"],
                what="used-buffer notification with avail flags 0", observed=loud,
                expected="interrupt", detail=_trace(out))
    judge.check(f"{USED_SUPP}/1", loud["interrupt"] and not quiet["interrupt"],
                what="used_event disregarded without EVENT_IDX (set to ask for the "
                     "opposite of the flag)", observed={"flag-set": quiet["interrupt"],
                                                        "flag-clear": loud["interrupt"]},
                expected={"flag-set": False, "flag-clear": True}, detail=_trace(out))
    flags = sorted({quiet["used_flags"], loud["used_flags"]})
    judge.check(f"{AVAIL_SUPP}/1", set(flags) <= {0, 1}, what="used ring flags",
                observed=flags, expected="0 or 1", detail=_trace(out))
    _judge_spurious(judge, out)


def _judge_spurious(judge, out):
    sp = out["spurious"]
    judge.check(f"{AVAIL_SUPP}/5", sp["completed_after"]
                and sp["used_idx_after_spurious"] == sp["used_idx_before"],
                what="five notifications with nothing new, then a real request",
                observed=sp, expected="nothing used by the spurious ones; the real one served",
                detail=_trace(out))


@pytest.mark.clause(f"{USED_SUPP}/4", f"{USED_SUPP}/5", f"{USED_SUPP}/6", f"{AVAIL_SUPP}/3",
                    f"{AVAIL_SUPP}/5")
def test_notification_suppression_by_event_idx(dut, judge):
    _need_requests(dut)
    out = dut.probe("vq_suppression", transport=dut.transport,
                    virtio_id=dut.profile.virtio_id, event_idx=True)
    if not out["negotiated_event_idx"]:
        raise NotApplicable("the device does not offer VIRTIO_F_EVENT_IDX")
    steps = _steps(out)
    due, held = steps["event-at-next-flag-set"], steps["event-out-of-reach"]
    for s in (due, held):
        if not s["completed"]:
            raise GuestCommandError(f"request of step {s['step']} never completed: "
                                    "nothing to judge")
    judge.check(f"{USED_SUPP}/5", due["interrupt"],
                what="used entry written at the index named by used_event",
                observed=due, expected="interrupt", detail=_trace(out))
    judge.check(f"{USED_SUPP}/4", due["interrupt"],
                what="VIRTQ_AVAIL_F_NO_INTERRUPT set while used_event asks for the "
                     "notification (the flag must be disregarded)", observed=due,
                expected="interrupt", detail=_trace(out))
    judge.check(f"{USED_SUPP}/6", not held["interrupt"],
                what="used entry written before the index named by used_event",
                observed=held, expected="no interrupt", detail=_trace(out))
    flags = sorted({due["used_flags"], held["used_flags"]})
    judge.check(f"{AVAIL_SUPP}/3", flags == [0], what="used ring flags with EVENT_IDX",
                observed=flags, expected=[0], detail=_trace(out))
    _judge_spurious(judge, out)
