"""``virtio-conformance bench``: boot each machine variant N times and time it.

Two stages per boot, from QEMU's launch: ``ready`` (the guest printed its ready marker
on serial: SSH is listening) and ``ssh`` (the first command over SSH returned).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

from .engine import log
from .errors import HarnessError
from .machine.accel import choose_accelerator
from .machine.guest import Guest, GuestConfig
from .machine.qemu import find_qemu
from .machine.ssh import new_keypair
from .transports import ALL_VARIANTS, VARIANTS


def run_bench(runs: int = 5, variants: list[str] | None = None) -> list[dict]:
    from .images.builder import build_image

    qemu = find_qemu()
    image = build_image(progress=log)
    accel = choose_accelerator(qemu, image.kernel, image.initrd, image.digest, progress=log)
    log(f"accelerator: {accel.accelerator} ({accel.reason})")
    key, pubkey = new_keypair()
    rows = []
    for name in variants or ALL_VARIANTS:
        times: dict[str, list[float]] = {"ready": [], "ssh": []}
        failures = 0
        for n in range(runs):
            workdir = Path(tempfile.mkdtemp(prefix=f"vc-bench-{name}-"))
            config = GuestConfig(variant=name, profiles=[], kernel=image.kernel,
                                 initrd=image.initrd, workdir=workdir, qemu=qemu,
                                 accelerator=accel.accelerator, ssh_key=key, ssh_pubkey=pubkey)
            try:
                with Guest(config) as guest:
                    launched = guest._t0 + guest.stage_times["backends"]
                    guest.run("true", check=True)
                    times["ssh"].append(time.monotonic() - launched)
                    times["ready"].append(guest.stage_times["ready"]
                                          - guest.stage_times["backends"])
                log(f"{name} boot {n + 1}/{runs}: ready {times['ready'][-1]:.2f}s, "
                    f"ssh {times['ssh'][-1]:.2f}s")
            except HarnessError as e:
                # A failed boot is a result too (and evidence of flakiness): count it.
                failures += 1
                log(f"{name} boot {n + 1}/{runs} FAILED: {str(e).splitlines()[0]}")
            finally:
                shutil.rmtree(workdir, ignore_errors=True)
        for stage in ("ready", "ssh"):
            values = times[stage] or [float("nan")]
            rows.append({"machine": VARIANTS[name].machine, "variant": name, "stage": stage,
                         "runs": len(times[stage]), "min": round(min(values), 3),
                         "median": round(statistics.median(values), 3),
                         "max": round(max(values), 3), "failed_boots": failures,
                         "accelerator": accel.accelerator})
    return rows
