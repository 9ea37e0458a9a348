"""The probe's ring layer and commands against a fake device (no guest)."""

import pytest
from test_virtqueue_fakes import (
    EVENT_IDX,
    INDIRECT_DESC,
    RING_PACKED,
    VERSION_1,
    FakeEntropy,
    FakeMemory,
)

from conformance.probe import cmd_vq
from conformance.probe.device import Device
from conformance.probe.virtqueue import GuardedBuffer, PackedQueue, SplitQueue


@pytest.fixture
def mem():
    return FakeMemory()


def _patch(monkeypatch, mem, device):
    monkeypatch.setattr(cmd_vq, "_open", lambda location, transport, virtio_id:
                        (Device(device, mem, legacy=device.legacy), mem))


def test_split_layout_is_the_legacy_one(mem):
    q = SplitQueue(mem, 0, 8)
    desc, avail, used = q.addresses()
    assert avail == desc + 16 * 8 and used % 4096 == 0 and used > avail + 6 + 2 * 8
    with pytest.raises(ValueError):
        SplitQueue(mem, 0, 6)


def test_split_ring_round_trip_wraps(mem):
    dev = FakeEntropy(mem)
    d = Device(dev, mem)
    d.bring_up(0, (0,), sizes={0: 4})
    q = d.queues[0]
    for n in range(10):  # more than the ring holds: positions wrap
        buf = GuardedBuffer(mem, 32, True)
        head = d.submit(q, [buf.segment()])
        assert q.wait_used(1, 1)
        [elem] = q.reap()
        assert elem == {"pos": n, "id": head, "len": 32}
        assert buf.observe()["changed"] == 32 and buf.observe()["guard_after_intact"]
    assert d.irq_used == 0 and d.poll_interrupts() == (True, False)


def test_packed_ring_round_trip_wraps(mem):
    dev = FakeEntropy(mem, features=VERSION_1 | RING_PACKED)
    d = Device(dev, mem)
    d.bring_up(RING_PACKED, (0,), sizes={0: 4})
    q = d.queues[0]
    assert isinstance(q, PackedQueue)
    wraps = set()
    for _ in range(7):
        a, b = GuardedBuffer(mem, 8, True), GuardedBuffer(mem, 8, True)
        ident = d.submit(q, [a.segment(), b.segment()])
        assert q.wait_used(1, 1)
        [elem] = q.reap()
        assert elem["id"] == ident and elem["len"] == 16
        wraps.add(elem["wrap"])
    assert wraps == {0, 1}


def test_vq_requests_reports_a_clean_device(monkeypatch, mem):
    _patch(monkeypatch, mem, FakeEntropy(mem))
    out = cmd_vq.vq_requests({}, "mmio", 4, indirect=True)
    assert out["negotiated_indirect"]
    for r in out["requests"]:
        assert r["completed"] and r["interrupt"] and r["table_untouched"]
        assert r["used"][0]["id"] == r["id"] and r["used"][0]["len"] == r["written"]
    assert len(out["batch"]["used"]) == 3
    assert out["status_final_reset"] == 0 and out["trace"]


@pytest.mark.parametrize("bug, field, value", [
    ("short", "written", 63),  # device reports more than it wrote
    ("len-plus", "len", 68),
])
def test_vq_requests_shows_a_misbehaving_device(monkeypatch, mem, bug, field, value):
    _patch(monkeypatch, mem, FakeEntropy(mem, bugs=[bug]))
    out = cmd_vq.vq_requests({}, "mmio", 4)
    first = out["requests"][0]
    got = first["written"] if field == "written" else first["used"][0]["len"]
    assert got == value


def test_vq_requests_batch_shows_a_buffer_used_twice(monkeypatch, mem):
    _patch(monkeypatch, mem, FakeEntropy(mem, bugs=["twice"]))
    out = cmd_vq.vq_requests({}, "mmio", 4)
    ids = [u["id"] for u in out["batch"]["used"]]
    assert len(ids) > len(set(ids))


def test_suppression_steps(monkeypatch, mem):
    _patch(monkeypatch, mem, FakeEntropy(mem))
    plain = cmd_vq.vq_suppression({}, "mmio", 4)
    assert [s["interrupt"] for s in plain["steps"]] == [False, True]
    assert plain["spurious"]["completed_after"]
    _patch(monkeypatch, mem, FakeEntropy(mem))
    event = cmd_vq.vq_suppression({}, "mmio", 4, event_idx=True)
    assert event["negotiated_event_idx"]
    assert [s["interrupt"] for s in event["steps"]] == [True, False]
    _patch(monkeypatch, mem, FakeEntropy(mem, features=VERSION_1 | INDIRECT_DESC))
    assert cmd_vq.vq_suppression({}, "mmio", 4, event_idx=True)["skipped"]


def test_before_driver_ok_and_reset(monkeypatch, mem):
    _patch(monkeypatch, mem, FakeEntropy(mem))
    out = cmd_vq.vq_before_driver_ok({}, "mmio", 4)
    assert not out["before"]["consumed"] and out["after"]["completed"]
    _patch(monkeypatch, mem, FakeEntropy(mem, bugs=["early"]))
    assert cmd_vq.vq_before_driver_ok({}, "mmio", 4)["before"]["consumed"]
    _patch(monkeypatch, mem, FakeEntropy(mem))
    out = cmd_vq.vq_reset({}, "mmio", 4)
    assert out["status_after_reset"] == 0 and out["after_reset"]["ring_untouched"]
    assert out["fresh"]["used"][0]["pos"] == 0


def test_event_idx_flag_is_ignored_by_the_fake(mem):
    dev = FakeEntropy(mem)
    d = Device(dev, mem)
    d.bring_up(EVENT_IDX, (0,))
    assert d.has(EVENT_IDX)
