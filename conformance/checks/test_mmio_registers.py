"""virtio-mmio at register level: the in-guest probe is the driver (issue 4).

Virtio Over MMIO / MMIO Device Register Layout (Version 2), its Legacy Interface
(Version 1), the feature-bit rules of the basic facilities as the MMIO registers show
them, and the "version 3" proposal's draft clauses.  Each check arranges the device
with one probe command (see conformance/probe/cmd_mmio.py) and judges the raw
registers; every judgment's detail lists the register accesses behind it.
"""

import pytest

from conformance.errors import NotApplicable
from conformance.probe import regs

LAYOUT = "transport/mmio/mmio-device-register-layout"
LEGACY = "transport/mmio/legacy-interface"
FEATURES = "basic/feature-bits/feature-bits"
RESERVED = "basic/reserved-feature-bits/reserved-feature-bits"
LEGACY_RESERVED = "basic/reserved-feature-bits/legacy-interface-reserved-feature-bits"
RESET = "basic/device-reset/device-reset"
V3 = "proposal/mmio-v3"

F = regs.FEATURE_BITS
VERSION_1 = F["VIRTIO_F_VERSION_1"]
# Transport-range bits (24..41) 1.4 defines for another transport only: SR-IOV is a PCI
# capability, NOTIF_CONFIG_DATA a PCI notification scheme.
FOREIGN_TO_MMIO = {F["VIRTIO_F_SR_IOV"]: "VIRTIO_F_SR_IOV (PCI only)",
                   F["VIRTIO_F_NOTIF_CONFIG_DATA"]: "VIRTIO_F_NOTIF_CONFIG_DATA (PCI only)"}
# Transport-range bits that exist only on the legacy interface.
LEGACY_ONLY = {F["VIRTIO_F_NOTIFY_ON_EMPTY"]: "VIRTIO_F_NOTIFY_ON_EMPTY (legacy only)",
               F["VIRTIO_F_ANY_LAYOUT"]: "VIRTIO_F_ANY_LAYOUT (legacy only)",
               30: "bit 30 (legacy UNUSED)"}
TRANSPORT_BITS = range(24, 42)  # 1.4: bits 24..41 are transport/ring features
RESERVED_BITS = range(42, 50)  # 1.4: reserved for future extensions
DEFINED_BANKS = 2  # 1.4 defines no feature bit at or above 64 for the shipped devices
ALL_ONES_64 = (1 << 64) - 1


def _mmio_only(dut):
    # Some clauses judged here apply to every transport; PCI judges them in its own checks.
    if dut.location.bus != "mmio":
        raise NotApplicable(f"an MMIO register check; {dut.transport} is judged by the PCI "
                            "checks")


def _fmt(access):
    op, off, _w, val = access
    if op == "#":
        return f"[{val}]"
    return f"{op} 0x{off:03x}={val:#x}"


def accesses(out, step=None, offsets=None):
    """The probe's accesses as text: all, or those of one marked ``step``, optionally
    only those touching ``offsets``."""
    trace = out["accesses"]
    if step is not None:
        start = next((i for i, a in enumerate(trace) if a[0] == "#" and a[3] == step), None)
        if start is None:
            return f"(no step {step!r} in the trace)"
        end = next((i for i in range(start + 1, len(trace)) if trace[i][0] == "#"), len(trace))
        trace = trace[start:end]
    if offsets is not None:
        offs = {regs.MMIO[o] if isinstance(o, str) else o for o in offsets}
        trace = [a for a in trace if a[0] == "#" or a[1] in offs]
    return "; ".join(_fmt(a) for a in trace)


def _bits(value):
    return [b for b in range(value.bit_length()) if value >> b & 1]


# ---------------------------------------------------------------- identity and features
@pytest.mark.clause(f"{LAYOUT}/reg-magicvalue-1", f"{LAYOUT}/reg-version-1",
                    f"{LAYOUT}/reg-devicefeatures-1", f"{LAYOUT}/reg-devicefeatures-2",
                    f"{LAYOUT}/reg-devicefeaturessel-1", f"{RESERVED}/1", f"{RESERVED}/9",
                    f"{FEATURES}/3", f"{LEGACY_RESERVED}/prose-2", f"{V3}/version/1",
                    f"{V3}/version/2", f"{V3}/notify/1", f"{V3}/notify/3", f"{V3}/msi/1",
                    f"{V3}/conflict/2")
def test_mmio_identity_and_feature_banks(dut, judge):
    _mmio_only(dut)
    out = dut.probe("mmio_survey")
    ids = out["identity"]
    legacy = dut.transport == "mmio-legacy"
    ident = accesses(out, "identity")
    judge.equal(f"{LAYOUT}/reg-magicvalue-1", ids["MagicValue"], regs.MMIO_MAGIC,
                what="MagicValue (0x000)", detail=ident)
    if not legacy:
        judge.check(f"{LAYOUT}/reg-version-1", ids["Version"] in (2, 3), what="Version (0x004)",
                    observed=ids["Version"], expected="2 (or 3 under the proposal)",
                    detail=ident)
    if ids["Version"] == 3:
        judge.equal(f"{V3}/version/1", ids["Version"], 3, what="Version (0x004)", detail=ident)
    else:
        judge.na(f"{V3}/version/1", f"device shows Version {ids['Version']}, not the "
                                    "version-3 proposal")

    banks = out["feature_banks"]
    offered = banks[0] | (banks[1] << 32)
    detail = accesses(out, "feature banks")
    again = out["feature_banks_again"]
    # Re-selecting banks 1 then 0 gives the same words: the selector decides.
    judge.check(f"{LAYOUT}/reg-devicefeaturessel-1", again == [banks[1], banks[0]],
                what="DeviceFeatures after re-selecting banks 1 then 0",
                observed=[hex(v) for v in again],
                expected=[hex(banks[1]), hex(banks[0])], detail=detail)
    # Banks beyond the defined bits carry nothing (a device that ignores the selector's
    # high values, or shifts it away, repeats a defined bank there).
    beyond = {n: v for n, v in enumerate(banks) if n >= DEFINED_BANKS and v}
    judge.check(f"{LAYOUT}/reg-devicefeatures-2", not beyond,
                what="DeviceFeatures for DeviceFeaturesSel 2..7 (bits 64..255)",
                observed={f"bank {n}": hex(v) for n, v in beyond.items()} or "all 0",
                expected="0 in every bank past bit 63", detail=detail)
    if legacy:
        # The legacy layout's features are one 32-bit word.
        judge.check(f"{LAYOUT}/reg-devicefeatures-1", banks[0] != 0,
                    what="DeviceFeatures bank 0 on the legacy layout", observed=banks[0],
                    expected="the offered legacy features (non-zero)", detail=detail)
        judge.check(f"{LEGACY_RESERVED}/prose-2", bool(banks[0] >> F["VIRTIO_F_ANY_LAYOUT"] & 1),
                    what="VIRTIO_F_ANY_LAYOUT (bit 27) offered on the legacy interface",
                    observed=hex(banks[0]), expected="bit 27 set", detail=detail)
    else:
        judge.check(f"{LAYOUT}/reg-devicefeatures-1", banks[0] != banks[1],
                    what="DeviceFeatures for DeviceFeaturesSel 0 and 1 differ",
                    observed=[hex(banks[0]), hex(banks[1])],
                    expected="two different 32-bit slices", detail=detail)
        judge.check(f"{RESERVED}/1", bool(banks[1] & 1),
                    what="VIRTIO_F_VERSION_1 (bit 32 = bank 1 bit 0)",
                    observed=hex(banks[1]), expected="bit 0 of bank 1 set", detail=detail)
    judge.check(f"{RESERVED}/9", not offered >> F["VIRTIO_F_SR_IOV"] & 1,
                what="VIRTIO_F_SR_IOV (bit 37) on an MMIO device (no SR-IOV capability)",
                observed=hex(offered), expected="bit 37 clear", detail=detail)

    wrong = {}
    for bit in _bits(offered):
        if bit in FOREIGN_TO_MMIO:
            wrong[bit] = FOREIGN_TO_MMIO[bit]
        elif bit in RESERVED_BITS:
            wrong[bit] = "reserved for future extensions"
        elif not legacy and bit in LEGACY_ONLY:
            wrong[bit] = LEGACY_ONLY[bit]
        elif legacy and bit >= 32:
            wrong[bit] = "above bit 31 on the legacy layout (one 32-bit word)"
        elif bit in TRANSPORT_BITS and bit not in F.values() and bit not in LEGACY_ONLY:
            wrong[bit] = "transport range, undefined in 1.4"
    for n, v in beyond.items():
        wrong[f"bank {n}"] = f"{v:#x}: no feature bit defined there"
    judge.check(f"{FEATURES}/3", not wrong, what="offered bits a device on this transport "
                "cannot honour", observed={str(k): v for k, v in wrong.items()} or "none",
                expected="none", detail=detail)

    if ids["Version"] == 3:
        judge.check(f"{V3}/conflict/2", not offered >> F["VIRTIO_F_NOTIF_CONFIG_DATA"] & 1,
                    what="bit 39 offered by a Version 3 device", observed=hex(offered),
                    expected="bit 39 clear", detail=detail)
        _judge_version_3(judge, out, offered)
    else:
        for c in ("conflict/2", "version/2", "notify/1", "notify/3", "msi/1"):
            judge.na(f"{V3}/{c}", f"device shows Version {ids['Version']}, not the "
                                  "version-3 proposal")


V3_NOTIFICATION_BIT = 39  # the proposal's MMIO notification feature (1.4's bit 39 differs)


def _judge_version_3(judge, out, offered):
    """The proposal's register claims, on a device that says Version 3."""
    ident = accesses(out, "identity")
    judge.check(f"{V3}/version/2", out["identity"]["MagicValue"] == regs.MMIO_MAGIC
                and bool(out["feature_banks"][1] & 1),
                what="MagicValue and the version-2 feature registers on a Version 3 device",
                observed={"MagicValue": hex(out["identity"]["MagicValue"]),
                          "bank 1": hex(out["feature_banks"][1])},
                expected="0x74726976, VERSION_1 in bank 1", detail=ident)
    if not offered >> V3_NOTIFICATION_BIT & 1:
        judge.na(f"{V3}/notify/1", "MMIO notification (bit 39) not offered")
        judge.na(f"{V3}/notify/3", "MMIO notification (bit 39) not offered")
    else:
        layout = out["v3"]["queue_notify"]
        base, mult = layout & 0xFFFF, layout >> 16
        count = sum(1 for q in out["queues"] if q["max"])
        addrs = [base + i * mult for i in range(count)]
        detail = accesses(out, "version 3 registers")
        judge.check(f"{V3}/notify/1", layout != 0, what="QueueNotify read (layout word)",
                    observed=hex(layout), expected="base and multiplier", detail=detail)
        inside = [a for a in addrs if not (regs.MMIO["Config"] <= a <= 0x200 - 4)
                  and a != regs.MMIO["QueueNotify"]]
        judge.check(f"{V3}/notify/3", not inside, what=f"notification addresses of {count} "
                    "queues (base + index x multiplier)", observed=[hex(a) for a in inside]
                    or "all inside the window, clear of registers",
                    expected="inside the 0x200 window, clear of defined registers",
                    detail=detail)
    judge.na(f"{V3}/msi/1", "the proposal's MSI registers are not exercised yet")


# ---------------------------------------------------------------- queues, SHM, reset values
@pytest.mark.clause(f"{LAYOUT}/reg-queuesizemax-1", f"{LAYOUT}/reg-queuesel-1",
                    f"{LEGACY}/reg-queuesizemax-1", f"{LEGACY}/reg-queuesel-1",
                    f"{LAYOUT}/reg-shmlenlow-shmlenhigh-2",
                    f"{LAYOUT}/reg-shmbaselow-shmbasehigh-1", f"{LAYOUT}/4",
                    f"{LAYOUT}/reg-configgeneration-2")
def test_mmio_queue_and_shm_registers(dut, judge):
    out = dut.probe("mmio_survey")
    legacy = dut.transport == "mmio-legacy"
    queues = out["queues"]
    present = [q["index"] for q in queues if q["max"]]
    # Host-side oracle: how many queues QEMU itself says the device has.
    host = dut.host("virtio_status")
    host_count = host.get("num-vqs")
    qdetail = accesses(out, "queues", offsets=["QueueSel", "QueueNumMax"])
    size_clause = f"{LEGACY}/reg-queuesizemax-1" if legacy else f"{LAYOUT}/reg-queuesizemax-1"
    sel_clause = f"{LEGACY}/reg-queuesel-1" if legacy else f"{LAYOUT}/reg-queuesel-1"
    expected_present = list(range(host_count)) if host_count is not None else "(no host count)"
    judge.check(size_clause, present == expected_present,
                what="queues with a non-zero QueueSizeMax vs the device's queue count "
                     "(host: x-query-virtio-status num-vqs)",
                observed=present, expected=expected_present, detail=qdetail)
    # Selectors no queue can have must show an absent queue (0), not the queue
    # selected before them.
    stale = [e for e in out["queue_sel_out_of_range"] if e["max"] != 0]
    judge.check(size_clause, not stale,
                what="QueueSizeMax after QueueSel 0 then an out-of-range QueueSel",
                observed={hex(e["sel"]): e["max"] for e in stale} or "all 0",
                expected="0 for every out-of-range selector",
                detail=accesses(out, "out-of-range QueueSel"))
    # Selection works if the per-queue registers change with QueueSel: the first absent
    # queue after the present ones reads 0 right after a present one read non-zero.
    first_absent = next((q for q in queues if not q["max"]), None)
    judge.check(sel_clause, bool(present) and first_absent is not None,
                what="QueueSizeMax follows QueueSel (present queues non-zero, the next 0)",
                observed={q["index"]: q["max"] for q in queues[:len(present) + 2]},
                expected="non-zero for queues 0..n-1, 0 after", detail=qdetail)

    if legacy:
        judge.na(f"{LAYOUT}/reg-shmlenlow-shmlenhigh-2", "no SHM registers in the legacy layout")
        judge.na(f"{LAYOUT}/reg-shmbaselow-shmbasehigh-1",
                 "no SHM registers in the legacy layout")
        judge.na(f"{LAYOUT}/reg-configgeneration-2",
                 "no ConfigGeneration in the legacy layout")
    else:
        shm = out["shm"]
        sdetail = accesses(out, "shared memory regions")
        # No shipped profile declares a shared memory region, so every id is unused.
        bad_len = {s["id"]: hex(s["len"]) for s in shm if s["len"] != ALL_ONES_64}
        bad_base = {s["id"]: hex(s["base"]) for s in shm if s["base"] != ALL_ONES_64}
        judge.check(f"{LAYOUT}/reg-shmlenlow-shmlenhigh-2", not bad_len,
                    what=f"SHMLenLow/High for unused region ids 0..{len(shm) - 1}",
                    observed=bad_len or "all ones", expected=hex(ALL_ONES_64), detail=sdetail)
        judge.check(f"{LAYOUT}/reg-shmbaselow-shmbasehigh-1", not bad_base,
                    what=f"SHMBaseLow/High for unused region ids 0..{len(shm) - 1}",
                    observed=bad_base or "all ones", expected=hex(ALL_ONES_64), detail=sdetail)
        gen = out["config_generation"]
        judge.check(f"{LAYOUT}/reg-configgeneration-2", gen[0] == gen[1],
                    what="ConfigGeneration read twice with no change in between",
                    observed=gen, expected="the same value twice",
                    detail=accesses(out, "reset values", offsets=["ConfigGeneration"]))
    judge.equal(f"{LAYOUT}/4", out["interrupt_status"], 0,
                what="InterruptStatus of a reset device (no event has happened)",
                detail=accesses(out, "reset values", offsets=["InterruptStatus"]))


# ---------------------------------------------------------------- feature negotiation
@pytest.mark.clause(f"{FEATURES}/2", f"{FEATURES}/4", f"{LAYOUT}/reg-status-1",
                    f"{LAYOUT}/reg-status-2", f"{LAYOUT}/reg-driverfeatures-1",
                    f"{LAYOUT}/reg-driverfeatures-2", f"{LAYOUT}/reg-driverfeaturessel-1",
                    f"{LEGACY}/reg-status-1", f"{LEGACY}/reg-status-2")
def test_mmio_feature_negotiation(dut, judge):
    _mmio_only(dut)
    if dut.transport == "mmio-legacy":
        out = dut.probe("mmio_negotiate")
        detail = accesses(out, "legacy: status bits written and read back",
                          offsets=["Status"])
        steps = out["status_steps"]
        for clause in (f"{LEGACY}/reg-status-1", f"{LEGACY}/reg-status-2"):
            judge.check(clause, all(s["read"] == s["wrote"] for s in steps),
                        what="Status read back after each write (ACK, +DRIVER, +DRIVER_OK)",
                        observed=[hex(s["read"]) for s in steps],
                        expected=[hex(s["wrote"]) for s in steps], detail=detail)
        for clause in (f"{FEATURES}/2", f"{FEATURES}/4"):
            judge.na(clause, "the legacy interface has no FEATURES_OK handshake")
        for clause in ("reg-driverfeatures-1", "reg-driverfeatures-2",
                       "reg-driverfeaturessel-1"):
            judge.na(f"{LAYOUT}/{clause}", "legacy: one 32-bit feature word, no bank to "
                     "select; its effect is judged by the legacy device checks")
        return
    out = dut.probe("mmio_negotiate", keep=True)
    # The host's view of what the driver accepted, while VERSION_1 alone is in place.
    host = dut.host("virtio_status")
    dut.probe("mmio_reset_only")
    ok_status = regs.STATUS["ACKNOWLEDGE"] | regs.STATUS["DRIVER"] | regs.STATUS["FEATURES_OK"]
    attempts = {a["name"]: a for a in out["attempts"]}
    first, again = attempts["all offered"], attempts["all offered, after reset"]
    invalid = next(a for a in out["attempts"] if "not offered" in a["name"])
    only_v1 = attempts["VERSION_1 only"]

    def step(a):
        return accesses(out, "negotiate: " + a["name"], offsets=[
            "Status", "DriverFeatures", "DriverFeaturesSel"])

    judge.equal(f"{LAYOUT}/reg-status-2", first["status"], ok_status,
                what="Status after writing ACKNOWLEDGE|DRIVER|FEATURES_OK (all offered "
                     "features accepted)", detail=step(first))
    judge.equal(f"{LAYOUT}/reg-status-1", first["status_again"], first["status"],
                what="Status read again (the bits in effect do not drift)", detail=step(first))
    judge.check(f"{FEATURES}/2", bool(first["status"] & regs.STATUS["FEATURES_OK"])
                and bool(only_v1["status"] & regs.STATUS["FEATURES_OK"]),
                what="FEATURES_OK kept for valid subsets (all offered; VERSION_1 alone)",
                observed=[hex(first["status"]), hex(only_v1["status"])],
                expected="FEATURES_OK (0x8) set in both",
                detail=step(first) + " || " + step(only_v1))
    judge.check(f"{FEATURES}/2", not invalid["status"] & regs.STATUS["FEATURES_OK"],
                what=f"FEATURES_OK refused for an invalid set ({invalid['name']}: "
                     f"{invalid['accepted']:#x})",
                observed=hex(invalid["status"]), expected="FEATURES_OK (0x8) clear",
                detail=step(invalid))
    judge.check(f"{FEATURES}/4", bool(again["status"] & regs.STATUS["FEATURES_OK"]),
                what="the same (all offered) features accepted again after a reset",
                observed=hex(again["status"]), expected="FEATURES_OK (0x8) set",
                detail=step(again))
    # DriverFeatures is write-only: its effect is seen from the host.  VERSION_1 alone
    # went through DriverFeaturesSel 1 as bit 0; bank 0 got 0.
    accepted = host.get("guest-features", {})
    transports = accepted.get("transports", [])
    dev = accepted.get("dev-features", [])
    unknown = accepted.get("unknown-dev-features") or accepted.get("unknown-features")
    ok = (len(transports) == 1 and "VIRTIO_F_VERSION_1" in transports[0]
          and not dev and not unknown)
    hdetail = (step(only_v1) + " || host x-query-virtio-status guest-features: "
               + str(accepted))
    for clause in ("reg-driverfeatures-1", "reg-driverfeatures-2", "reg-driverfeaturessel-1"):
        judge.check(f"{LAYOUT}/{clause}", ok,
                    what="features the device took from DriverFeaturesSel 1 = 0x1, "
                         "DriverFeaturesSel 0 = 0 (host view)",
                    observed=accepted, expected="VIRTIO_F_VERSION_1 alone", detail=hdetail)


# ---------------------------------------------------------------- reset
@pytest.mark.clause(f"{LAYOUT}/reg-status-3", f"{LAYOUT}/5", f"{LAYOUT}/reg-queueready-2",
                    f"{LAYOUT}/8", f"{LEGACY}/reg-status-3", f"{LEGACY}/reg-status-4",
                    f"{LEGACY}/reg-queuepfn-4", f"{RESET}/1")
def test_mmio_reset_clears_the_device(dut, judge):
    _mmio_only(dut)
    out = dut.probe("mmio_reset")
    legacy = dut.transport == "mmio-legacy"
    before, after = out["before"], out["after"]
    arrange = accesses(out, "arrange: every queue given a size, addresses and ready/PFN",
                       offsets=["QueueSel", "QueuePFN", "QueueReady"])
    seen = accesses(out, "observe before reset")
    reset = accesses(out, "reset: write 0 to Status")
    judge.equal(f"{RESET}/1", after["status"], 0,
                what=f"Status after writing 0 (waited up to {after['reset_seconds']} s)",
                detail=reset)
    not_live = {q["index"]: hex(q["live"]) for q in before["queues"] if not q["live"]}
    stale = {q["index"]: hex(q["live"]) for q in after["queues"] if q["live"]}
    if legacy:
        judge.check(f"{LEGACY}/reg-status-3", after["status"] == 0 and not stale,
                    what="writing 0 to Status resets the device (Status and every QueuePFN "
                         "read 0)",
                    observed={"Status": hex(after["status"]), "QueuePFN": stale or "all 0"},
                    expected="Status 0, QueuePFN 0", detail=reset)
        judge.check(f"{LEGACY}/reg-status-4", not stale,
                    what="QueuePFN of every queue after a reset", observed=stale or "all 0",
                    expected="0 for every queue", detail=reset)
        judge.check(f"{LEGACY}/reg-queuepfn-4", not not_live,
                    what="QueuePFN read back after writing each queue's page number",
                    observed=not_live or "non-zero for every queue",
                    expected="the page number written", detail=arrange + " || " + seen)
        return
    judge.check(f"{LAYOUT}/reg-queueready-2", not not_live,
                what="QueueReady read back after writing 1 to every queue",
                observed=not_live or "1 for every queue", expected=1,
                detail=arrange + " || " + seen)
    irq = after["interrupt_status"]
    judge.check(f"{LAYOUT}/reg-status-3", after["status"] == 0 and not stale,
                what="writing 0 to Status resets the device",
                observed={"Status": hex(after["status"]), "QueueReady": stale or "all 0"},
                expected="Status 0, every QueueReady 0", detail=reset)
    judge.check(f"{LAYOUT}/5", irq == 0 and not stale,
                what="InterruptStatus and every QueueReady after a reset",
                observed={"InterruptStatus": hex(irq), "QueueReady": stale or "all 0"},
                expected="all 0", detail=reset)
    if out.get("ring_reset_negotiated"):
        pending = {q["index"]: hex(q["queue_reset"]) for q in after["queues"]
                   if q["queue_reset"]}
        judge.check(f"{LAYOUT}/8", not pending, what="QueueReset of every queue after a reset",
                    observed=pending or "all 0", expected=0, detail=reset)
    else:
        judge.na(f"{LAYOUT}/8", "VIRTIO_F_RING_RESET not negotiated (not offered)")


# ---------------------------------------------------------------- per-queue reset
@pytest.mark.clause(f"{LAYOUT}/9", f"{LAYOUT}/10", f"{LAYOUT}/11", f"{LAYOUT}/12",
                    f"{LAYOUT}/reg-queuereset-1", f"{V3}/conflict/1")
def test_mmio_queue_reset_handshake(dut, judge):
    out = dut.probe("mmio_queue_reset")
    v3 = out["version"] == 3
    if not v3:
        judge.na(f"{V3}/conflict/1", f"device shows Version {out['version']}, not the "
                                     "version-3 proposal")
    if "skipped" in out:
        for c in ("9", "10", "11", "12", "reg-queuereset-1"):
            judge.na(f"{LAYOUT}/{c}", out["skipped"])
        if v3:
            judge.na(f"{V3}/conflict/1", out["skipped"])
        return
    enabled, finished = out["enabled"], out["finished"]
    detail = accesses(out, "queue reset: write 1 to QueueReset")
    judge.equal(f"{LAYOUT}/9", enabled["QueueReset"], 0,
                what="QueueReset of queue 0 once enabled through QueueReady",
                detail=accesses(out, "arrange: queue 0 set up and enabled"))
    done = finished["QueueReset"] == 0 and finished["QueueReady"] == 0
    judge.check(f"{LAYOUT}/12", done, what="QueueReset and QueueReady when the reset is done",
                observed=finished, expected={"QueueReset": 0, "QueueReady": 0}, detail=detail)
    # A reset queue is one the device no longer has ready: QueueReady must have dropped.
    for clause in (f"{LAYOUT}/10", f"{LAYOUT}/reg-queuereset-1"):
        judge.check(clause, finished["QueueReady"] == 0,
                    what="queue 0 reset by writing 1 to QueueReset (QueueReady after it)",
                    observed=finished["QueueReady"], expected=0, detail=detail)
    readings = out["while_resetting"]
    # Either the reset finished at once (first read 0) or it read 1 until it did.
    judge.check(f"{LAYOUT}/11", all(v in (0, 1) for v in readings)
                and readings[-1] == 0 and all(v == 1 for v in readings[:-1]),
                what="QueueReset while the queue reset is under way",
                observed=readings, expected="1 while under way, then 0", detail=detail)
    if v3:
        judge.check(f"{V3}/conflict/1", done, what="offset 0x0c0 behaves as 1.4 QueueReset "
                    "on a Version 3 device offering bit 40", observed=finished,
                    expected={"QueueReset": 0, "QueueReady": 0}, detail=detail)


# ---------------------------------------------------------------- interrupts, generation
CONFIG_CHANGE = {  # profile -> how the host changes the device's configuration
    "virtio-net": ("set_link", {"up": False}),
    "virtio-blk": ("block_resize", {"size": 128 << 20}),
    "virtio-balloon": ("balloon", {"target_bytes": 256 << 20}),
}


@pytest.mark.clause(f"{LAYOUT}/3", f"{LAYOUT}/4", f"{LAYOUT}/reg-interruptstatus-1",
                    f"{LAYOUT}/reg-interruptack-1", f"{LAYOUT}/6",
                    f"{LAYOUT}/reg-configgeneration-1")
def test_mmio_config_change_interrupt(dut, judge):
    change = CONFIG_CHANGE.get(dut.profile.name)
    if change is None:
        raise NotApplicable(f"no host-side lever changes {dut.profile.name}'s configuration")
    legacy = dut.transport == "mmio-legacy"
    armed = dut.probe("mmio_irq_arm")
    action, args = change
    dut.host(action, **args)
    seen = dut.probe("mmio_irq_observe")
    before = accesses(armed, "before the event")
    after = accesses(seen, "after the event") + " || " + accesses(
        seen, "still held without an ACK")
    ack = accesses(seen, "ACK the configuration change bit")
    what = f"host {action}({args}) with DRIVER_OK set"
    judge.check(f"{LAYOUT}/reg-interruptstatus-1", armed["interrupt_status"] == 0
                and seen["interrupt_status"] == 2,
                what=f"InterruptStatus before and after {what}",
                observed=[hex(armed["interrupt_status"]), hex(seen["interrupt_status"])],
                expected=["0x0", "0x2 (configuration change only)"],
                detail=before + " || " + after)
    # Only a configuration change happened: no queue is even set up, so the used-buffer
    # bit (and every undefined bit) has no event behind it.
    judge.check(f"{LAYOUT}/4", not seen["interrupt_status"] & ~2
                and not seen["interrupt_status_later"] & ~2,
                what=f"InterruptStatus bits other than configuration change after {what} "
                     "(no queue in use)",
                observed=[hex(seen["interrupt_status"]), hex(seen["interrupt_status_later"])],
                expected="only bit 1 (0x2)", detail=after)
    judge.check(f"{LAYOUT}/3", bool(seen["interrupt_status"] & 2)
                and bool(seen["interrupt_status_later"] & 2),
                what="configuration-change bit set by the event and still set "
                     f"{0.2} s later without an ACK",
                observed=[hex(seen["interrupt_status"]), hex(seen["interrupt_status_later"])],
                expected="bit 1 set in both", detail=after)
    judge.check(f"{LAYOUT}/reg-interruptack-1", not seen["interrupt_status_after_ack"] & 2,
                what="InterruptStatus after writing 0x2 to InterruptACK",
                observed=hex(seen["interrupt_status_after_ack"]), expected="bit 1 clear",
                detail=ack)
    if legacy:
        for c in ("6", "reg-configgeneration-1"):
            judge.na(f"{LAYOUT}/{c}", "no ConfigGeneration in the legacy layout")
        return
    gens = [armed["config_generation"], seen["config_generation"],
            seen["config_generation_again"]]
    for clause in (f"{LAYOUT}/6", f"{LAYOUT}/reg-configgeneration-1"):
        judge.check(clause, gens[1] != gens[0] and gens[2] == gens[1],
                    what=f"ConfigGeneration before and after {what}",
                    observed=gens, expected="a new value after the change, then stable",
                    detail=before + " || " + after)
