"""Choosing the accelerator by trying it, not by the existence of /dev/kvm.

A ``/dev/kvm`` can exist and still be unable to run the guest (a nested or software
backend that aborts on an MSR, stalls, or stops with an internal error).  So KVM is
used only after a short smoke boot reached the guest's init; the answer is cached per
QEMU version, kernel and host kernel, so the price is paid once.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import HarnessError
from ..paths import cache_dir
from .qemu import qemu_version

ACCEL_ENV = "VIRTIO_CONFORMANCE_ACCEL"
SMOKE_SECONDS = 20.0


@dataclass
class AcceleratorChoice:
    accelerator: str  # "kvm" | "tcg"
    reason: str
    fell_back: bool  # /dev/kvm was there but could not boot the guest

    def to_json(self) -> dict:
        return asdict(self)


def kvm_device_usable() -> bool:
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)


def choose_accelerator(qemu: str, kernel: Path, initrd: Path, image_digest: str,
                       progress=None) -> AcceleratorChoice:
    forced = os.environ.get(ACCEL_ENV, "auto").lower()
    if forced in ("kvm", "tcg"):
        return AcceleratorChoice(forced, f"forced by {ACCEL_ENV}={forced}", False)
    if not kvm_device_usable():
        return AcceleratorChoice("tcg", "no usable /dev/kvm", False)
    key = f"{qemu_version(qemu)}|{image_digest}|{platform.release()}"
    cache_file = cache_dir() / "accel.json"
    try:
        cached = json.loads(cache_file.read_text())
        if cached.get("key") == key:
            return AcceleratorChoice(**cached["choice"])
    except (OSError, ValueError, TypeError, KeyError):
        pass
    if progress:
        progress("probing KVM with a smoke boot (once per QEMU/kernel/host)")
    ok, detail = _smoke_boot_kvm(qemu, kernel, initrd)
    if ok:
        choice = AcceleratorChoice("kvm", f"KVM smoke boot reached guest init ({detail})", False)
    else:
        choice = AcceleratorChoice("tcg", f"/dev/kvm present but KVM could not boot the guest: "
                                          f"{detail}; using TCG", True)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps({"key": key, "choice": choice.to_json()}))
    except OSError:
        pass
    return choice


def _smoke_boot_kvm(qemu: str, kernel: Path, initrd: Path) -> tuple[bool, str]:
    """Boot microvm under KVM until the guest's init marker; report why not."""
    from .guest import Guest, GuestConfig  # late: guest imports this room's siblings

    workdir = Path(tempfile.mkdtemp(prefix="vc-kvm-smoke-"))
    config = GuestConfig(variant="mmio", profiles=[], kernel=kernel, initrd=initrd,
                         workdir=workdir, qemu=qemu, accelerator="kvm", boot_until="init",
                         stage_seconds={"kernel": SMOKE_SECONDS, "init": SMOKE_SECONDS})
    start = time.monotonic()
    try:
        with Guest(config):
            pass
        return True, f"{time.monotonic() - start:.1f}s"
    except HarnessError as e:
        # QEMU's own last words say more than the symptom ("no QMP greeting").
        said = [line for line in getattr(e, "output", "").splitlines() if line.strip()]
        return False, (said[-1][:300] if said else str(e).splitlines()[0])
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
