"""Device status, device reset and virtqueue reset, judged with real buffers.

Basic Facilities / Device Status Field, Device Reset, Virtqueue Reset; and the legacy
interface's note on device initialization.  The probe makes a request of the device
type before DRIVER_OK, around a reset, after a malformed chain, and around a queue reset.
"""

import pytest

from conformance.errors import GuestCommandError, NotApplicable
from conformance.probe import requests as probe_requests

STATUS = "basic/device-status/device-status-field"
RESET = "basic/device-reset/device-reset"
LEGACY_INIT = "general/legacy-interface-device-initialization/prose-3"
VQ_RESET = "basic/virtqueue-reset/virtqueue-reset"
VQ_REENABLE = "basic/virtqueue-reset/virtqueue-re-enable/1"
LEGACY = ("mmio-legacy", "pci-transitional")


def _need_requests(dut):
    if not probe_requests.supported(dut.profile.virtio_id):
        raise NotApplicable(f"the probe makes no requests of device type "
                            f"{dut.profile.virtio_id} ({dut.profile.name})")


def _probe(dut, command, **args):
    out = dut.probe(command, transport=dut.transport, virtio_id=dut.profile.virtio_id, **args)
    if out.get("bring_up", {}).get("features_refused"):
        raise GuestCommandError("the device refused the features the probe asked for: "
                                "nothing to observe")
    return out


def _trace(out, limit=60):
    return "; ".join(out.get("trace", [])[-limit:])


@pytest.mark.clause(f"{STATUS}/1", LEGACY_INIT)
def test_nothing_used_before_driver_ok(dut, judge):
    _need_requests(dut)
    out = _probe(dut, "vq_before_driver_ok")
    before, after = out["before"], out["after"]
    if not after["completed"]:
        raise GuestCommandError("the request did not complete even after DRIVER_OK: "
                                "the observation before it proves nothing")
    if dut.transport in LEGACY:
        judge.na(f"{STATUS}/1", "through the legacy interface a driver may use the device "
                                "before DRIVER_OK (legacy note on device initialization)")
        judge.check(LEGACY_INIT, before["consumed"],
                    what="a request made available and notified before DRIVER_OK, "
                         "through the legacy interface",
                    observed={k: before[k] for k in ("consumed", "used_idx", "status")},
                    expected="served before DRIVER_OK", detail=_trace(out))
        return
    judge.check(f"{STATUS}/1", not before["consumed"] and not before["interrupt"]
                and not before["buffers_written"],
                what="a request made available and notified before DRIVER_OK",
                observed={k: before[k] for k in ("consumed", "interrupt", "buffers_written",
                                                 "used_idx", "status")},
                expected="not consumed, no used-buffer interrupt", detail=_trace(out))


@pytest.mark.clause(f"{RESET}/1", f"{RESET}/2")
def test_reset_stops_the_device(dut, judge):
    _need_requests(dut)
    out = _probe(dut, "vq_reset")
    if not out["control"]["completed"]:
        raise GuestCommandError("the control request before the reset never completed")
    judge.equal(f"{RESET}/1", out["status_after_reset"], 0,
                what="device status read after writing 0 (with a buffer pending)",
                detail=_trace(out))
    judge.equal(f"{RESET}/1", out["bring_up"]["status_after_reset"], 0,
                what="device status read after the reset that starts the bring-up",
                detail=_trace(out))
    fresh = out["fresh"]
    first = fresh["used"][0] if fresh["used"] else None
    judge.check(f"{RESET}/1", fresh["completed"] and first is not None and first.get(
                "pos", 0) == 0 and first["id"] == fresh["id"],
                what="state after the reset: a request on new rings is the queue's first "
                     "(used position 0)", observed=first, expected={"pos": 0, "id": fresh["id"]},
                detail=_trace(out))
    after = out["after_reset"]
    judge.check(f"{RESET}/2", after["ring_untouched"] and not after["interrupt"]
                and after["request"]["written"] == 0,
                what="a queue notified after the reset, with a buffer it had been given",
                observed={"ring_untouched": after["ring_untouched"],
                          "interrupt": after["interrupt"], "used_idx": after["used_idx"],
                          "bytes_written": after["request"]["written"]},
                expected="ring and buffer untouched, no interrupt", detail=_trace(out))


@pytest.mark.destructive  # a backend may give up for good on a malformed chain
@pytest.mark.clause(f"{STATUS}/2", f"{STATUS}/3")
def test_needs_reset_after_a_malformed_chain(dut, judge):
    _need_requests(dut)
    if dut.transport in LEGACY:
        raise NotApplicable("the legacy interface has no DEVICE_NEEDS_RESET status bit")
    out = _probe(dut, "vq_needs_reset")
    if not out["control"]["completed"]:
        raise GuestCommandError("a well-formed request before the malformed one never "
                                "completed: the probe cannot drive this device's queue")
    observed = {k: out[k] for k in ("status", "needs_reset", "config_interrupt", "used_idx")}
    judge.check(f"{STATUS}/2", out["needs_reset"],
                what="status after a chain whose next index is beyond the queue",
                observed=observed, expected="DEVICE_NEEDS_RESET (0x40) set",
                detail=_trace(out))
    if out["needs_reset"]:
        judge.check(f"{STATUS}/3", out["config_interrupt"],
                    what="configuration change notification after DEVICE_NEEDS_RESET "
                         "(DRIVER_OK was set)", observed=observed,
                    expected="configuration change interrupt", detail=_trace(out))
    else:
        judge.na(f"{STATUS}/3", "the device did not set DEVICE_NEEDS_RESET")


@pytest.mark.clause(f"{VQ_RESET}/1", f"{VQ_RESET}/2", VQ_REENABLE)
def test_virtqueue_reset_and_reenable(dut, judge):
    _need_requests(dut)
    if dut.transport in LEGACY:
        raise NotApplicable("the legacy interface has no virtqueue reset")
    out = _probe(dut, "vq_queue_reset")
    if not out["negotiated_ring_reset"]:
        raise NotApplicable("the device does not offer VIRTIO_F_RING_RESET")
    if not out["before"]["completed"]:
        raise GuestCommandError("the request before the queue reset never completed: "
                                "the probe cannot drive this device's queue")
    after, reset = out["after_reset"], out["reset_result"]
    judge.check(f"{VQ_RESET}/1", not after["interrupt"] and after["request"]["written"] == 0
                and after["ring_untouched"] is not False,
                what="the queue notified after its reset, with a buffer pending",
                observed=after, expected="buffer and ring untouched, no interrupt",
                detail=_trace(out))
    judge.check(f"{VQ_RESET}/2", reset["finished"] and reset["queue_enable"] == 0,
                what="queue state after the reset", observed=reset,
                expected="reset finished (reads 0), queue disabled", detail=_trace(out))
    if not reset["finished"] or reset["queue_enable"] != 0:
        for clause in (VQ_REENABLE,):
            judge.na(clause, "the queue reset did not take effect: nothing to re-enable")
        return
    enabled = out["after_enable"]
    first = enabled["used"][0] if enabled["used"] else None
    judge.check(f"{VQ_RESET}/2", enabled["completed"] and first is not None
                and first["pos"] == 0,
                what="first request on the re-enabled queue (positions back to 0)",
                observed=first, expected={"pos": 0}, detail=_trace(out))
    judge.check(VQ_REENABLE, enabled["completed"] and first is not None
                and first["id"] == enabled["id"]
                and enabled["queue"]["size"] == out["new_size"],
                what=f"request on the queue re-enabled with size {out['new_size']} "
                     "and new rings", observed=first, expected={"id": enabled["id"]},
                detail=_trace(out))
