"""The basic-facilities checks can fail: one observed field mutated flips its clause.

``recordings/vq.json`` holds the probe outputs of a real run on QEMU 7.2 (Debian's
7.2.22) of the virtqueue, device-status and configuration-change checks on all four
transports.  Unmutated, each target shows exactly what QEMU really does (its findings
included, listed in ``QEMU_FINDINGS``); mutated, the owning clause FAILs (or WARNs).
"""

import json

import pytest
from replay import load_recording, replay, verdicts

SPLIT = "basic/split-virtqueues"
PACKED = "basic/packed-virtqueues"
USED_SUPP = f"{SPLIT}/used-buffer-notification-suppression"
AVAIL_SUPP = f"{SPLIT}/available-buffer-notification-suppression"
STATUS = "basic/device-status/device-status-field"
RESET = "basic/device-reset/device-reset"
VQ_RESET = "basic/virtqueue-reset/virtqueue-reset"
PCI_GEN = "transport/pci/common-configuration-structure-layout/6"
MMIO_GEN = "transport/mmio/mmio-device-register-layout/6"
LEGACY_INIT = "general/legacy-interface-device-initialization/prose-3"
BLK_NOTIFY = "device/blk/device-operation/2"
INDIRECT_CHAIN = f"{SPLIT}/indirect-descriptors/2"
P_CHAIN = f"{PACKED}/scatter-gather-support/1"
MMIO_GEN_TOKEN = "transport/mmio/mmio-device-register-layout/reg-configgeneration-1"

CHECKS = ["test_split_ring_requests", "test_packed_ring_requests",
          "test_notification_suppression_by_flags",
          "test_notification_suppression_by_event_idx", "test_nothing_used_before_driver_ok",
          "test_reset_stops_the_device", "test_needs_reset_after_a_malformed_chain",
          "test_virtqueue_reset_and_reenable", "test_config_change_after_driver_ok",
          "test_config_change_before_driver_ok"]

# What QEMU 7.2 really does, as these checks judge it (each one a reported finding).
QEMU_FINDINGS = {
    "virtio-rng@pci": {INDIRECT_CHAIN},
    "virtio-rng@mmio": {INDIRECT_CHAIN, f"{VQ_RESET}/1", f"{VQ_RESET}/2"},
    "virtio-rng@mmio-legacy": {INDIRECT_CHAIN, LEGACY_INIT},
    "virtio-rng@pci-transitional": {INDIRECT_CHAIN, LEGACY_INIT},
    "virtio-rng-packed@pci": {INDIRECT_CHAIN, P_CHAIN},
    "virtio-blk@pci": {INDIRECT_CHAIN, f"{STATUS}/1", PCI_GEN},
    "virtio-blk@mmio": {INDIRECT_CHAIN, f"{STATUS}/1", MMIO_GEN, MMIO_GEN_TOKEN,
                        f"{VQ_RESET}/1", f"{VQ_RESET}/2"},
    "virtio-blk@pci-transitional": {INDIRECT_CHAIN},
    "virtio-scsi@pci": {INDIRECT_CHAIN, f"{STATUS}/1", f"{SPLIT}/the-virtqueue-used-ring/2"},
    "virtio-balloon@mmio-legacy": set(),
    "virtio-console@pci-transitional": set(),
}


@pytest.fixture(scope="module")
def recording():
    return load_recording("vq.json")


def _key(recording, target, command, **match):
    """The recorded probe call of ``command`` whose arguments include ``match``."""
    for key in recording["targets"][target]["probes"]:
        name, _, args = key.partition(" ")
        if name == command and all(json.loads(args).get(k) == v for k, v in match.items()):
            return key
    raise KeyError(f"{target}: no recorded {command} {match}")


def _mutate(recording, target, command, change, **match):
    import copy

    mutated = copy.deepcopy(recording)
    entry = mutated["targets"][target]["probes"][_key(recording, target, command, **match)]
    output = json.loads(entry["stdout"])
    change(output)
    entry["stdout"] = json.dumps(output)
    return mutated


def _run(tmp_path, recording, target, checks):
    code, results = replay(tmp_path, recording, target, extra=[
        a for c in checks for a in ("--check", c)])
    return code, verdicts(results)


@pytest.mark.parametrize("target", sorted(QEMU_FINDINGS))
def test_recorded_qemu_devices_show_exactly_their_findings(tmp_path, recording, target):
    code, seen = _run(tmp_path, recording, target, CHECKS)
    failed = {c for c, v in seen.items() if v in ("FAIL", "WARN")}
    assert failed == QEMU_FINDINGS[target]
    assert "ERROR" not in seen.values()
    assert code == (1 if QEMU_FINDINGS[target] else 0)


def _first_request(out, pred=lambda r: True):
    return next(r for r in out["requests"] if pred(r))


def _set_used_len(out):
    r = _first_request(out, lambda r: not r["indirect"])
    r["used"][0]["len"] = r["written"] + 10


def _write_readable(out):
    _first_request(out)["readable_untouched"] = False


def _write_table(out):
    _first_request(out)["table_untouched"] = False


def _poisoned_elem(out):
    _first_request(out)["used"][0]["len"] = 0xDEADBEEF


def _no_interrupt(out):
    _first_request(out)["interrupt"] = False


def _used_flags_2(out):
    _first_request(out)["used_flags"] = 2


def _used_twice(out):
    out["batch"]["used"].append(dict(out["batch"]["used"][0]))


def _indirect_table_written(out):
    _first_request(out, lambda r: r["indirect"] and not r.get("direct"))[
        "indirect_table_untouched"] = False


SPLIT_ARGS = {"ring": "split"}
PACKED_ARGS = {"ring": "packed"}


def _packed_wrong_id(out):
    _first_request(out)["used"][0]["id"] ^= 0x40


def _packed_no_wrap(out):
    for r in out["requests"]:
        for u in r["used"]:
            u["wrap"] = 1


def _packed_early(out):
    out["unpublished"]["before_flip"]["consumed"] = True


def _step(name, **fields):
    def change(out):
        step = next(s for s in out["steps"] if s["step"] == name)
        step.update(fields)
    return change


def _spurious_consumed(out):
    out["spurious"]["used_idx_after_spurious"] = out["spurious"]["used_idx_before"] + 1


def _set(path, value):
    def change(out):
        node = out
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return change


def _fresh_not_first(out):
    out["fresh"]["used"][0]["pos"] = 3


def _gen_unchanged(out):
    out["generation"] = out["generation_after_read"] = 0  # what the arm step read


@pytest.mark.parametrize("target, command, match, change, clause, verdict", [
    # split ring
    ("virtio-rng@pci", "vq_requests", SPLIT_ARGS, _set_used_len,
     f"{SPLIT}/the-virtqueue-used-ring/2", "FAIL"),
    ("virtio-blk@pci", "vq_requests", SPLIT_ARGS, _write_readable,
     f"{SPLIT}/the-virtqueue-descriptor-table/1", "FAIL"),
    ("virtio-blk@mmio", "vq_requests", SPLIT_ARGS, _write_table,
     f"{SPLIT}/the-virtqueue-descriptor-table/2", "FAIL"),
    ("virtio-rng@pci", "vq_requests", SPLIT_ARGS, _poisoned_elem,
     f"{SPLIT}/the-virtqueue-used-ring/1", "FAIL"),
    ("virtio-net@pci-transitional", "vq_requests", SPLIT_ARGS, _no_interrupt,
     f"{USED_SUPP}/3", "FAIL"),
    ("virtio-rng@mmio-legacy", "vq_requests", SPLIT_ARGS, _used_flags_2, f"{AVAIL_SUPP}/1",
     "FAIL"),
    ("virtio-blk@pci", "vq_requests", SPLIT_ARGS, _used_twice, f"{SPLIT}/message-framing/1",
     "FAIL"),
    ("virtio-rng@pci", "vq_requests", SPLIT_ARGS, _indirect_table_written,
     f"{SPLIT}/indirect-descriptors/1", "FAIL"),
    ("virtio-rng@mmio-legacy", "vq_requests", SPLIT_ARGS, _no_interrupt,
     "transport/mmio/mmio-device-register-layout/reg-queuenotify-1", "PASS"),
    # packed ring
    ("virtio-blk-packed@pci", "vq_requests", PACKED_ARGS, _packed_wrong_id,
     f"{PACKED}/scatter-gather-support/1", "FAIL"),
    ("virtio-rng-packed@mmio", "vq_requests", PACKED_ARGS, _packed_no_wrap,
     f"{PACKED}/packed-virtqueues/2", "FAIL"),
    ("virtio-blk-packed@mmio", "vq_requests", PACKED_ARGS, _packed_early,
     f"{PACKED}/the-virtqueue-descriptor-table/2", "FAIL"),
    ("virtio-rng-packed@pci", "vq_requests", PACKED_ARGS, _write_readable,
     f"{PACKED}/the-virtqueue-descriptor-table/1", "FAIL"),
    # notification suppression
    ("virtio-rng@pci", "vq_suppression", {"event_idx": False},
     _step("flag-set", interrupt=True), f"{USED_SUPP}/2", "WARN"),
    ("virtio-rng@pci", "vq_suppression", {"event_idx": False},
     _step("flag-set", interrupt=True), f"{USED_SUPP}/1", "FAIL"),
    ("virtio-net@mmio", "vq_suppression", {"event_idx": False},
     _step("flag-clear", interrupt=False), f"{USED_SUPP}/3", "FAIL"),
    ("virtio-blk@pci", "vq_suppression", {"event_idx": False}, _spurious_consumed,
     f"{AVAIL_SUPP}/5", "FAIL"),
    ("virtio-blk@pci", "vq_suppression", {"event_idx": True},
     _step("event-at-next-flag-set", interrupt=False), f"{USED_SUPP}/5", "FAIL"),
    ("virtio-blk@pci", "vq_suppression", {"event_idx": True},
     _step("event-at-next-flag-set", interrupt=False), f"{USED_SUPP}/4", "FAIL"),
    ("virtio-rng@mmio", "vq_suppression", {"event_idx": True},
     _step("event-out-of-reach", interrupt=True), f"{USED_SUPP}/6", "WARN"),
    ("virtio-console@pci", "vq_suppression", {"event_idx": True},
     _step("event-out-of-reach", used_flags=1), f"{AVAIL_SUPP}/3", "FAIL"),
    # device status and reset
    ("virtio-rng@pci", "vq_before_driver_ok", {}, _set(["before", "consumed"], True),
     f"{STATUS}/1", "FAIL"),
    ("virtio-blk@mmio-legacy", "vq_before_driver_ok", {}, _set(["before", "consumed"], False),
     LEGACY_INIT, "FAIL"),
    ("virtio-rng@pci", "vq_reset", {}, _set(["status_after_reset"], 1), f"{RESET}/1", "FAIL"),
    ("virtio-net@mmio", "vq_reset", {}, _fresh_not_first, f"{RESET}/1", "FAIL"),
    ("virtio-blk@pci-transitional", "vq_reset", {}, _set(["after_reset", "ring_untouched"],
                                                         False), f"{RESET}/2", "FAIL"),
    ("virtio-rng@pci", "vq_needs_reset", {}, _set(["needs_reset"], False), f"{STATUS}/2",
     "WARN"),
    ("virtio-rng@mmio", "vq_needs_reset", {}, _set(["config_interrupt"], False),
     f"{STATUS}/3", "FAIL"),
    # virtqueue reset (PCI: QEMU implements it there)
    ("virtio-rng@pci", "vq_queue_reset", {}, _set(["after_reset", "interrupt"], True),
     f"{VQ_RESET}/1", "FAIL"),
    ("virtio-rng@pci", "vq_queue_reset", {}, _set(["reset_result", "queue_enable"], 1),
     f"{VQ_RESET}/2", "FAIL"),
    ("virtio-rng@pci", "vq_queue_reset", {}, _set(["new_size"], 64),
     "basic/virtqueue-reset/virtqueue-re-enable/1", "FAIL"),
    # configuration changes (after DRIVER_OK QEMU bumps the generation and notifies)
    ("virtio-blk@pci", "vq_config_observe", {"driver_ok": True}, _gen_unchanged, PCI_GEN,
     "FAIL"),
    ("virtio-blk@pci", "vq_config_observe", {"driver_ok": True},
     _set(["config_interrupt"], False), BLK_NOTIFY, "WARN"),
    ("virtio-net@mmio", "vq_config_observe", {"driver_ok": True}, _gen_unchanged, MMIO_GEN,
     "FAIL"),
])
def test_one_mutated_observation_flips_its_clause(tmp_path, recording, target, command, match,
                                                  change, clause, verdict):
    check = {"vq_requests": ["test_split_ring_requests", "test_packed_ring_requests"],
             "vq_suppression": ["test_notification_suppression_by_flags",
                                "test_notification_suppression_by_event_idx"],
             "vq_before_driver_ok": ["test_nothing_used_before_driver_ok"],
             "vq_reset": ["test_reset_stops_the_device"],
             "vq_needs_reset": ["test_needs_reset_after_a_malformed_chain"],
             "vq_queue_reset": ["test_virtqueue_reset_and_reenable"],
             "vq_config_observe": ["test_config_change_after_driver_ok"]}[command]
    mutated = _mutate(recording, target, command, change, **match)
    _, seen = _run(tmp_path, mutated, target, check)
    assert seen[clause] == verdict


def _nothing_completed(out):
    for r in out["requests"]:
        r["completed"] = False


@pytest.mark.parametrize("target, command, match, change, check", [
    ("virtio-blk@pci", "vq_requests", SPLIT_ARGS, _nothing_completed,
     "test_split_ring_requests"),
    ("virtio-rng@mmio", "vq_needs_reset", {}, _set(["control", "completed"], False),
     "test_needs_reset_after_a_malformed_chain"),
])
def test_a_device_the_probe_cannot_drive_is_an_error_not_a_failure(tmp_path, recording, target,
                                                                   command, match, change,
                                                                   check):
    mutated = _mutate(recording, target, command, change, **match)
    code, seen = _run(tmp_path, mutated, target, [check])
    assert "FAIL" not in seen.values() and "ERROR" in seen.values()
    assert code == 3
