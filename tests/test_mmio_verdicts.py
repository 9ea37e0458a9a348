"""The virtio-mmio register checks can fail (and pass): one mutated observation flips
the verdict of the clause that owns it.

The recording is a real run on QEMU 7.2 (8 device profiles on ``mmio`` and
``mmio-legacy``).  QEMU fails several clauses there for real (see the first test); the
mutations show each verdict moving both ways.
"""

import copy
import json

import pytest
from replay import load_recording, replay, verdicts, with_probe_output

LAYOUT = "transport/mmio/mmio-device-register-layout"
LEGACY = "transport/mmio/legacy-interface"
FEATURES = "basic/feature-bits/feature-bits"
RESERVED = "basic/reserved-feature-bits/reserved-feature-bits"
LEGACY_RESERVED = "basic/reserved-feature-bits/legacy-interface-reserved-feature-bits"

SURVEY = "mmio_survey {}"
NEGOTIATE = 'mmio_negotiate {"keep": true}'
LEGACY_NEGOTIATE = "mmio_negotiate {}"
RESET = "mmio_reset {}"
QUEUE_RESET = "mmio_queue_reset {}"
ARM = "mmio_irq_arm {}"
OBSERVE = "mmio_irq_observe {}"

CHECKS = {
    SURVEY: ["test_mmio_registers.py::test_mmio_identity_and_feature_banks",
             "test_mmio_registers.py::test_mmio_queue_and_shm_registers"],
    NEGOTIATE: ["test_mmio_registers.py::test_mmio_feature_negotiation"],
    LEGACY_NEGOTIATE: ["test_mmio_registers.py::test_mmio_feature_negotiation"],
    RESET: ["test_mmio_registers.py::test_mmio_reset_clears_the_device"],
    QUEUE_RESET: ["test_mmio_registers.py::test_mmio_queue_reset_handshake"],
    ARM: ["test_mmio_registers.py::test_mmio_config_change_interrupt"],
    OBSERVE: ["test_mmio_registers.py::test_mmio_config_change_interrupt"],
}


@pytest.fixture(scope="module")
def recording():
    return load_recording("mmio_registers.json")


# What QEMU 7.2 really does (the findings): these clauses FAIL unmutated.
QEMU_FINDINGS = {
    "virtio-net@mmio": {f"{LAYOUT}/reg-devicefeatures-2", f"{FEATURES}/3", f"{FEATURES}/2",
                        f"{LAYOUT}/reg-queuesizemax-1", f"{LAYOUT}/reg-shmbaselow-shmbasehigh-1",
                        f"{LAYOUT}/10", f"{LAYOUT}/12", f"{LAYOUT}/reg-queuereset-1",
                        f"{LAYOUT}/4", f"{LAYOUT}/reg-interruptstatus-1"},
    "virtio-blk@mmio-legacy": {f"{LEGACY}/reg-queuesizemax-1", f"{LEGACY_RESERVED}/prose-2",
                               f"{LAYOUT}/4", f"{LAYOUT}/reg-interruptstatus-1"},
    "virtio-rng@mmio-legacy": {f"{LEGACY}/reg-queuesizemax-1"},
}


@pytest.mark.parametrize("target", sorted(QEMU_FINDINGS))
def test_recorded_qemu_verdicts(tmp_path, recording, target):
    code, results = replay(tmp_path, recording, target, checks=sorted(
        {c for cs in CHECKS.values() for c in cs}))
    v = verdicts(results)
    assert {c for c, verdict in v.items() if verdict == "FAIL"} == QEMU_FINDINGS[target]
    assert "ERROR" not in v.values()
    assert code == 1


def _flip(tmp_path, recording, target, key, change, clause):
    mutated = with_probe_output(recording, target, key, change)
    _code, results = replay(tmp_path, mutated, target, checks=CHECKS[key])
    record = next(r for r in results.results if r.clause == clause)
    return record.verdict.value, record


def _set(path, value):
    def change(output):
        node = output
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value
    return change


# (target, probe, change, clause, verdict after the change)
MUTATIONS = [
    # identity and feature banks
    ("virtio-net@mmio", SURVEY, _set(["identity", "MagicValue"], 0x76697274),
     f"{LAYOUT}/reg-magicvalue-1", "FAIL"),
    ("virtio-net@mmio", SURVEY, _set(["identity", "Version"], 1),
     f"{LAYOUT}/reg-version-1", "FAIL"),
    ("virtio-net@mmio", SURVEY, _set(["feature_banks", 1], 0x100),
     f"{RESERVED}/1", "FAIL"),
    ("virtio-net@mmio", SURVEY, _set(["feature_banks_again", 1], 0x0),
     f"{LAYOUT}/reg-devicefeaturessel-1", "FAIL"),
    ("virtio-rng@mmio", SURVEY, _set(["feature_banks", 0], 0x101),
     f"{LAYOUT}/reg-devicefeatures-1", "FAIL"),
    ("virtio-net@mmio", SURVEY, lambda o: o["feature_banks"].__setitem__(
        slice(2, None), [0] * 6), f"{LAYOUT}/reg-devicefeatures-2", "PASS"),
    ("virtio-net@mmio", SURVEY, lambda o: o["feature_banks"].__setitem__(
        slice(2, None), [0] * 6), f"{FEATURES}/3", "PASS"),
    ("virtio-net@mmio-legacy", SURVEY, _set(["feature_banks", 0], 0x39bf8064 | 1 << 30 | 1),
     f"{FEATURES}/3", "PASS"),  # bit 30 is a legacy relic: allowed on the legacy layout
    ("virtio-net@mmio-legacy", SURVEY, _set(["feature_banks", 1], 0x1),
     f"{FEATURES}/3", "FAIL"),  # a bit above 31 on the one-word legacy layout
    ("virtio-rng@mmio", SURVEY, _set(["feature_banks", 1], 0x1 | 1 << 5),
     f"{RESERVED}/9", "FAIL"),  # SR-IOV on MMIO
    ("virtio-blk@mmio-legacy", SURVEY, _set(["feature_banks", 0], 0x31006ed4 | 1 << 27),
     f"{LEGACY_RESERVED}/prose-2", "PASS"),
    ("virtio-net@mmio-legacy", SURVEY, _set(["feature_banks", 0], 0x39bf8064 & ~(1 << 27)),
     f"{LEGACY_RESERVED}/prose-2", "FAIL"),
    # queues, shared memory, reset values
    ("virtio-rng@mmio-legacy", SURVEY, lambda o: [e.__setitem__("max", 0)
                                                  for e in o["queue_sel_out_of_range"]],
     f"{LEGACY}/reg-queuesizemax-1", "PASS"),
    ("virtio-net@mmio", SURVEY, lambda o: [e.__setitem__("max", 0)
                                           for e in o["queue_sel_out_of_range"]],
     f"{LAYOUT}/reg-queuesizemax-1", "PASS"),
    ("virtio-net@mmio", SURVEY, lambda o: ([e.__setitem__("max", 0)
                                            for e in o["queue_sel_out_of_range"]],
                                           o["queues"][2].__setitem__("max", 0)),
     f"{LAYOUT}/reg-queuesizemax-1", "FAIL"),  # one queue fewer than the host says
    ("virtio-net@mmio", SURVEY, lambda o: [q.__setitem__("max", 256) for q in o["queues"]],
     f"{LAYOUT}/reg-queuesel-1", "FAIL"),
    ("virtio-net@mmio", SURVEY, lambda o: [s.__setitem__("base", (1 << 64) - 1)
                                           for s in o["shm"]],
     f"{LAYOUT}/reg-shmbaselow-shmbasehigh-1", "PASS"),
    ("virtio-net@mmio", SURVEY, _set(["shm", 3, "len"], 0x1000),
     f"{LAYOUT}/reg-shmlenlow-shmlenhigh-2", "FAIL"),
    ("virtio-net@mmio", SURVEY, _set(["config_generation"], [0, 1]),
     f"{LAYOUT}/reg-configgeneration-2", "FAIL"),
    ("virtio-rng@mmio", SURVEY, _set(["interrupt_status"], 1), f"{LAYOUT}/4", "FAIL"),
    # negotiation
    ("virtio-net@mmio", NEGOTIATE, _set(["attempts", 2, "status"], 0x3),
     f"{FEATURES}/2", "PASS"),
    ("virtio-net@mmio", NEGOTIATE, lambda o: (o["attempts"][0].update(status=0x3),
                                              o["attempts"][2].update(status=0x3)),
     f"{FEATURES}/2", "FAIL"),
    ("virtio-net@mmio", NEGOTIATE, _set(["attempts", 1, "status"], 0x3),
     f"{FEATURES}/4", "WARN"),
    ("virtio-net@mmio", NEGOTIATE, _set(["attempts", 0, "status"], 0x1),
     f"{LAYOUT}/reg-status-2", "FAIL"),
    ("virtio-net@mmio", NEGOTIATE, _set(["attempts", 0, "status_again"], 0x3),
     f"{LAYOUT}/reg-status-1", "FAIL"),
    ("virtio-net@mmio-legacy", LEGACY_NEGOTIATE, _set(["status_steps", 1, "read"], 0x1),
     f"{LEGACY}/reg-status-2", "FAIL"),
    # reset
    ("virtio-net@mmio", RESET, _set(["after", "status"], 0x1), "basic/device-reset/device-reset/1",
     "FAIL"),
    ("virtio-net@mmio", RESET, _set(["after", "queues", 1, "live"], 1), f"{LAYOUT}/5", "FAIL"),
    ("virtio-net@mmio", RESET, _set(["after", "interrupt_status"], 2), f"{LAYOUT}/5", "FAIL"),
    ("virtio-net@mmio", RESET, _set(["after", "queues", 0, "live"], 1), f"{LAYOUT}/reg-status-3",
     "FAIL"),
    ("virtio-net@mmio", RESET, _set(["before", "queues", 2, "live"], 0),
     f"{LAYOUT}/reg-queueready-2", "FAIL"),
    ("virtio-net@mmio", RESET, _set(["after", "queues", 0, "queue_reset"], 1), f"{LAYOUT}/8",
     "FAIL"),
    ("virtio-net@mmio-legacy", RESET, _set(["after", "queues", 1, "live"], 0x1e100),
     f"{LEGACY}/reg-status-4", "FAIL"),
    ("virtio-net@mmio-legacy", RESET, _set(["after", "queues", 1, "live"], 0x1e100),
     f"{LEGACY}/reg-status-3", "FAIL"),
    ("virtio-net@mmio-legacy", RESET, _set(["before", "queues", 0, "live"], 0),
     f"{LEGACY}/reg-queuepfn-4", "FAIL"),
    # per-queue reset
    ("virtio-net@mmio", QUEUE_RESET, _set(["finished", "QueueReady"], 0), f"{LAYOUT}/12",
     "PASS"),
    ("virtio-net@mmio", QUEUE_RESET, _set(["finished", "QueueReady"], 0), f"{LAYOUT}/10",
     "PASS"),
    ("virtio-net@mmio", QUEUE_RESET, _set(["enabled", "QueueReset"], 1), f"{LAYOUT}/9", "FAIL"),
    ("virtio-net@mmio", QUEUE_RESET, _set(["while_resetting"], [1, 2, 0]), f"{LAYOUT}/11",
     "FAIL"),
    # interrupts and configuration generation
    ("virtio-net@mmio", OBSERVE, lambda o: o.update(interrupt_status=2,
                                                    interrupt_status_later=2),
     f"{LAYOUT}/4", "PASS"),
    ("virtio-blk@mmio", OBSERVE, lambda o: o.update(interrupt_status=2,
                                                    interrupt_status_later=2),
     f"{LAYOUT}/reg-interruptstatus-1", "PASS"),
    ("virtio-net@mmio", OBSERVE, _set(["interrupt_status_later"], 0), f"{LAYOUT}/3", "FAIL"),
    ("virtio-net@mmio", OBSERVE, _set(["interrupt_status_after_ack"], 3),
     f"{LAYOUT}/reg-interruptack-1", "FAIL"),
    ("virtio-net@mmio", OBSERVE, _set(["config_generation"], 0), f"{LAYOUT}/6", "FAIL"),
    ("virtio-balloon@mmio", OBSERVE, _set(["config_generation_again"], 7),
     f"{LAYOUT}/reg-configgeneration-1", "FAIL"),
    ("virtio-net@mmio-legacy", ARM, _set(["interrupt_status"], 2),
     f"{LAYOUT}/reg-interruptstatus-1", "FAIL"),
]


@pytest.mark.parametrize("target, key, change, clause, verdict", MUTATIONS,
                         ids=[f"{m[0]}-{m[3].rsplit('/', 1)[-1]}-{m[4]}-{i}"
                              for i, m in enumerate(MUTATIONS)])
def test_one_changed_observation_flips_its_clause(tmp_path, recording, target, key, change,
                                                  clause, verdict):
    got, record = _flip(tmp_path, recording, target, key, change, clause)
    assert got == verdict, record.evidence
    if verdict in ("FAIL", "WARN"):
        judged = [j for j in record.evidence["judgments"] if j["verdict"] == verdict]
        assert judged and judged[0]["detail"], "a broken clause shows the accesses behind it"


def test_host_view_of_accepted_features_decides_driver_feature_clauses(tmp_path, recording):
    # If the device took DriverFeaturesSel 1's word as bank 0, the host would show a
    # device feature accepted instead of VERSION_1.
    mutated = copy.deepcopy(recording)
    entry = mutated["targets"]["virtio-net@mmio"]["probes"]["host:virtio_status {}"]
    entry["return"]["guest-features"] = {
        "dev-features": ["VIRTIO_NET_F_CSUM: Device handling packets with partial checksum"],
        "transports": []}
    _code, results = replay(tmp_path, mutated, "virtio-net@mmio", checks=CHECKS[NEGOTIATE])
    v = verdicts(results)
    for clause in ("reg-driverfeatures-1", "reg-driverfeatures-2", "reg-driverfeaturessel-1"):
        assert v[f"{LAYOUT}/{clause}"] == "FAIL"


def test_version_3_device_is_judged_by_the_proposal(tmp_path, recording):
    mutated = with_probe_output(recording, "virtio-rng@mmio", SURVEY,
                                _set(["identity", "Version"], 3))
    _code, results = replay(tmp_path, mutated, "virtio-rng@mmio", checks=CHECKS[SURVEY])
    v = verdicts(results)
    assert v["proposal/mmio-v3/version/1"] == "PASS"
    assert v["proposal/mmio-v3/conflict/2"] == "PASS"
    assert v[f"{LAYOUT}/reg-version-1"] == "PASS"


def test_the_recording_holds_every_mmio_probe(recording):
    for target, data in recording["targets"].items():
        assert SURVEY in data["probes"], target
        assert json.loads(data["probes"][SURVEY]["stdout"])["accesses"]
