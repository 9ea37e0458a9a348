"""The virtio-mmio queue placement and config-width checks can fail (and pass): one
mutated observation flips the clause that owns it.

``recordings/mmio_queues.json`` is a real run on QEMU 7.2 (virtio-rng, -blk, -net on
``mmio`` and ``mmio-legacy``).  Unmutated, QEMU passes every clause these checks judge;
the mutations show each verdict can go the other way.
"""

import json

import pytest
from replay import load_recording, probe_output, replay, verdicts, with_probe_output

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

PLACEMENT = "test_mmio_queues.py::test_mmio_queue_placement"
WIDTHS = "test_mmio_queues.py::test_mmio_config_byte_access"
CHECKS = [PLACEMENT, WIDTHS]
TARGETS = ["virtio-rng@mmio", "virtio-rng@mmio-legacy", "virtio-blk@mmio",
           "virtio-blk@mmio-legacy", "virtio-net@mmio", "virtio-net@mmio-legacy"]
MODERN_CLAUSES = {SIZE, READY, DESC, DRIVER, DEVICE, NOT_READY}
LEGACY_CLAUSES = {L_SIZE, L_ALIGN, L_PFN}


@pytest.fixture(scope="module")
def recording():
    return load_recording("mmio_queues.json")


def _key(recording, target, command):
    return next(k for k in recording["targets"][target]["probes"] if k.startswith(command + " "))


@pytest.mark.parametrize("target", TARGETS)
def test_recorded_qemu_verdicts(tmp_path, recording, target):
    # What QEMU 7.2 really does: every placement clause of the layout passes, and the
    # configuration bytes agree at every width (entropy has no configuration: NA).
    _code, results = replay(tmp_path, recording, target, checks=CHECKS)
    v = verdicts(results)
    legacy = target.endswith("mmio-legacy")
    for clause in LEGACY_CLAUSES if legacy else MODERN_CLAUSES:
        assert v[clause] == "PASS", (clause, v[clause])
    for clause in MODERN_CLAUSES if legacy else LEGACY_CLAUSES:
        assert v[clause] == "NA", (clause, v[clause])
    assert v[CONFIG] == ("NA" if target.startswith("virtio-rng") else "PASS")
    assert "FAIL" not in v.values() and "ERROR" not in v.values()


def _set(path, value):
    def change(output):
        node = output
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


def _both(*changes):
    def change(output):
        for c in changes:
            c(output)
    return change


# (target, command, change, clause, verdict after the change)
MUTATIONS = [
    # modern: the ring went past its programmed size
    ("virtio-rng@mmio", "mmio_queue_layout", _set(["decoys", "past_used_ring", "changed"], 8),
     SIZE, "FAIL"),
    ("virtio-blk@mmio", "mmio_queue_layout", _set(["requests", 9, "used", 0, "pos"], 265),
     SIZE, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout", _set(["used_ring", "idx"], 9), SIZE, "FAIL"),
    # used ring written where the contiguous layout would put it
    ("virtio-rng@mmio", "mmio_queue_layout",
     _set(["decoys", "default_used_area", "changed"], 8), DEVICE, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout", _set(["requests", 4, "used", 0, "id"], 7),
     DEVICE, "FAIL"),
    # a request not taken from the programmed available ring
    ("virtio-blk@mmio", "mmio_queue_layout", _set(["requests", 3, "completed"], False),
     DRIVER, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout", lambda o: o["requests"].pop(),
     DRIVER, "FAIL"),
    # buffers not the ones the programmed descriptor table names
    ("virtio-rng@mmio", "mmio_queue_layout", _set(["requests", 2, "written"], 0),
     DESC, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout",
     _set(["requests", 5, "readable_untouched"], False), DESC, "FAIL"),
    # QueueReady 1 did not take (a device that then served nothing at all is an ERROR:
    # see below; one that worked on the request but put its used element elsewhere
    # fails the placement clauses)
    ("virtio-rng@mmio", "mmio_queue_layout", _set(["queue", "ready_read"], 0),
     READY, "FAIL"),
    # the device touched a queue whose QueueReady was 0
    ("virtio-rng@mmio", "mmio_queue_layout", _set(["not_ready", "used_idx"], 1),
     NOT_READY, "FAIL"),
    ("virtio-blk@mmio", "mmio_queue_layout", _set(["not_ready", "buffers_changed"], 513),
     NOT_READY, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout",
     _set(["not_ready", "used_ring_untouched"], False), NOT_READY, "FAIL"),
    ("virtio-net@mmio", "mmio_queue_layout",
     _set(["not_ready", "decoys", "past_used_ring", "changed"], 2), NOT_READY, "FAIL"),
    # legacy: used ring on the 4096 boundary instead of QueueAlign's 8192
    ("virtio-blk@mmio-legacy", "mmio_queue_layout",
     _set(["decoys", "default_used_area", "changed"], 8), L_ALIGN, "FAIL"),
    ("virtio-blk@mmio-legacy", "mmio_queue_layout",
     _set(["decoys", "default_used_area", "changed"], 8), L_PFN, "PASS"),
    ("virtio-rng@mmio-legacy", "mmio_queue_layout",
     _set(["decoys", "past_used_ring", "changed"], 8), L_SIZE, "FAIL"),
    ("virtio-net@mmio-legacy", "mmio_queue_layout", _set(["requests", 6, "used"], []),
     L_PFN, "FAIL"),
    # configuration bytes that differ with the access width
    ("virtio-blk@mmio", "mmio_config_widths", _set(["width_2", 1], 0x0201), CONFIG, "FAIL"),
    ("virtio-net@mmio-legacy", "mmio_config_widths", _set(["width_4", 0], 0x52), CONFIG,
     "FAIL"),
    ("virtio-net@mmio", "mmio_config_widths", _set(["width_1_again", 5], 0x2), CONFIG, "FAIL"),
]


@pytest.mark.parametrize("target, command, change, clause, verdict", MUTATIONS,
                         ids=[f"{m[0]}-{m[3].rsplit('/', 1)[-1]}-{m[4]}-{i}"
                              for i, m in enumerate(MUTATIONS)])
def test_one_changed_observation_flips_its_clause(tmp_path, recording, target, command,
                                                  change, clause, verdict):
    mutated = with_probe_output(recording, target, _key(recording, target, command), change)
    _code, results = replay(tmp_path, mutated, target, checks=CHECKS)
    record = next(r for r in results.results if r.clause == clause)
    assert record.verdict.value == verdict, record.evidence
    if verdict == "FAIL":
        judged = [j for j in record.evidence["judgments"] if j["verdict"] == "FAIL"]
        assert judged and "w 0x" in judged[0]["detail"], "the accesses behind a failure"


def test_a_dead_queue_is_an_error_not_a_pass(tmp_path, recording):
    # Neither with QueueReady 0 nor with QueueReady 1 did the device touch anything:
    # the control failed, so "left alone while not ready" proves nothing.
    target = "virtio-rng@mmio"
    dead = _both(lambda o: o["requests"][0].update(completed=False, used=[], written=0),
                 lambda o: o.update(requests=o["requests"][:1]))
    mutated = with_probe_output(recording, target, _key(recording, target,
                                                        "mmio_queue_layout"), dead)
    _code, results = replay(tmp_path, mutated, target, checks=[PLACEMENT])
    v = verdicts(results)
    assert v[NOT_READY] == "ERROR"
    assert v[READY] == "ERROR"


def _stranded(region_changed):
    """The first request's used element never showed at the programmed place, but the
    device wrote its buffers and ``region_changed`` bytes where a used ring does not
    belong: what a device reading the placement registers wrongly leaves behind."""
    def change(o):
        o["requests"] = [dict(o["requests"][0], completed=False, used=[])]
        o["used_ring"]["idx"] = 0
        o["decoys"]["default_used_area"]["changed"] = region_changed
    return change


def test_a_used_ring_written_elsewhere_fails_placement_not_error(tmp_path, recording):
    # (Also seen for real: with QueueAlign 4096 written while the probe looked at the
    # 8192 boundary, QEMU wrote 10 bytes at the 4096 one and this is what came back.)
    for target, placement, uncounted in (
            ("virtio-rng@mmio-legacy", L_ALIGN, [L_SIZE]),
            ("virtio-blk@mmio", DEVICE, [SIZE, DRIVER, DESC, READY])):
        mutated = with_probe_output(recording, target,
                                    _key(recording, target, "mmio_queue_layout"),
                                    _stranded(10))
        _code, results = replay(tmp_path, mutated, target, checks=[PLACEMENT])
        v = verdicts(results)
        assert v[placement] == "FAIL", target
        for clause in uncounted:
            assert v[clause] == "UNTESTED", (target, clause)
    assert v[NOT_READY] == "PASS"


def test_the_details_name_the_registers(tmp_path, recording):
    _code, results = replay(tmp_path, recording, "virtio-rng@mmio-legacy", checks=CHECKS)
    align = next(r for r in results.results if r.clause == L_ALIGN)
    detail = align.evidence["judgments"][0]["detail"]
    assert "w 0x03c=0x2000" in detail and "w 0x028=0x1000" in detail and "w 0x040=" in detail
    _code, results = replay(tmp_path, recording, "virtio-blk@mmio", checks=CHECKS)
    ready = next(r for r in results.results if r.clause == READY)
    assert "w 0x044=0x1" in ready.evidence["judgments"][0]["detail"]
    placed = next(r for r in results.results if r.clause == DEVICE)
    assert "w 0x0a0=" in placed.evidence["judgments"][0]["detail"]


def test_the_recording_places_rings_apart_and_wraps(recording):
    out = probe_output(recording, "virtio-net@mmio",
                       _key(recording, "virtio-net@mmio", "mmio_queue_layout"))
    q = out["queue"]
    assert q["size"] < q["max"]
    addrs = sorted([q["desc"], q["driver"], q["device"]])
    assert all(b - a > 4096 for a, b in zip(addrs, addrs[1:], strict=False))
    assert len(out["requests"]) > q["size"]
    legacy = probe_output(recording, "virtio-net@mmio-legacy",
                          _key(recording, "virtio-net@mmio-legacy", "mmio_queue_layout"))
    assert legacy["queue"]["device"] - legacy["queue"]["desc"] == 8192
    assert json.dumps(out)  # plain JSON
