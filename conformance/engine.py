"""The run engine, shared by the ``virtio-conformance`` command and the pytest plugin.

One ``Engine`` per run: it decides what to test (profiles × transports), prepares the
guest image, the accelerator and the run's SSH key once, and owns a pool of guests,
one per transport variant, shared by every device that can live in it.  A guest whose
boot failed or that died is not retried forever: each variant gets a bounded number of
boots, and what could not be observed is reported as ERROR.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from . import __version__
from .errors import ConfigError, HarnessError, MachineError
from .images.builder import GuestImage
from .machine.accel import AcceleratorChoice, choose_accelerator
from .machine.guest import DeviceUnderTest, Guest, GuestConfig
from .machine.processes import RUN_ID
from .machine.qemu import find_qemu, qemu_version
from .machine.ssh import new_keypair
from .profiles import Profile, resolve_profile, shipped_profiles
from .transports import ALL_VARIANTS, variant

SPEC_REVISION = "virtio-v1.4-cs01"
MAX_BOOTS_PER_VARIANT = 3  # the first boot, and two more after a crash or a failed boot


def log(message: str) -> None:
    """Progress for humans goes to stderr; stdout is for machine-readable output."""
    print(f"[virtio-conformance] {message}", file=sys.stderr, flush=True)


@dataclass
class Target:
    """One device on one transport: the unit a check is parametrized over."""

    profile: Profile
    transport: str
    na_reason: str = ""  # the host cannot provide this device: all its checks are NA

    @property
    def id(self) -> str:
        return f"{self.profile.name}@{self.transport}"


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S-") + RUN_ID[:6]


@dataclass
class RunOptions:
    profiles: list[str] = field(default_factory=list)  # names or paths; empty = all shipped
    transports: list[str] = field(default_factory=list)  # empty = every supported variant
    output: Path | None = None


class Engine:
    def __init__(self, options: RunOptions):
        self.options = options
        self.run_id = new_run_id()
        self.output = Path(options.output) if options.output else Path("reports") / self.run_id
        self.targets = self._select_targets()
        self.started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        self.image: GuestImage | None = None
        self.accel: AcceleratorChoice | None = None
        self.qemu = ""
        self._key: paramiko.PKey | None = None
        self._pubkey = ""
        self._guests: dict[str, Guest] = {}
        self._boots: dict[str, int] = {}
        self._boot_errors: dict[str, HarnessError] = {}
        self.guest_records: list[dict] = []
        self.replayed_from: str | None = None
        self.infra_errors: list[str] = []

    # ---- what to test
    def _select_targets(self) -> list[Target]:
        profiles = ([resolve_profile(p) for p in self.options.profiles]
                    if self.options.profiles else shipped_profiles())
        wanted = [variant(t).name for t in self.options.transports] or list(ALL_VARIANTS)
        targets = []
        for p in profiles:
            missing = p.missing_host_requirements()
            for t in wanted:
                if t in p.variants:
                    reason = ("host cannot provide this device: " + "; ".join(missing)
                              if missing else "")
                    targets.append(Target(p, t, reason))
        if not targets:
            raise ConfigError("nothing to test: no selected profile supports the selected "
                              "transports")
        return targets

    # ---- run-wide preparation (once)
    def prepare(self) -> None:
        from .images.builder import build_image

        self.output.mkdir(parents=True, exist_ok=True)
        self.qemu = find_qemu()
        self.image = build_image(progress=log)
        self.accel = choose_accelerator(self.qemu, self.image.kernel, self.image.initrd,
                                        self.image.digest, progress=log)
        log(f"accelerator: {self.accel.accelerator} ({self.accel.reason})")
        self._key, self._pubkey = new_keypair()

    def environment(self) -> dict:
        env = {
            "spec_revision": SPEC_REVISION,
            "suite_version": __version__,
            "run_id": self.run_id,
            "qemu_binary": self.qemu,
            "qemu_version": qemu_version(self.qemu) if self.qemu else "",
            "accelerator": self.accel.accelerator if self.accel else "",
            "accelerator_reason": self.accel.reason if self.accel else "",
            "kvm_fell_back_to_tcg": bool(self.accel and self.accel.fell_back),
            "image_digest": self.image.digest if self.image else "",
            "guest_kernel": (self.image.manifest.get("kernel_version", "")
                             if self.image else ""),
            "host": f"{platform.node()} {platform.system()} {platform.release()} "
                    f"{platform.machine()}",
            "python": platform.python_version(),
            "started": self.started,
            "finished": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "profiles": sorted({t.profile.name for t in self.targets}),
            "transports": sorted({t.transport for t in self.targets}),
            "guests": self.guest_records,
        }
        if self.replayed_from:
            env["replayed_from"] = self.replayed_from
            env["accelerator"] = "replay"
        if self.infra_errors:
            env["infra_errors"] = self.infra_errors
        return env

    # ---- the guest pool
    def guest_for(self, target: Target) -> tuple[Guest, DeviceUnderTest]:
        """The booted guest holding ``target``'s device (booting it on first use)."""
        name = target.transport
        guest = self._guests.get(name)
        if guest is not None and not guest.alive():
            reason = guest._abort_reason()
            log(f"{name} guest died ({reason}); it will be booted again")
            self.infra_errors.append(f"{name} guest died: {reason}")
            self.close_guest(name)
            guest = None
        if guest is None:
            if self._boots.get(name, 0) >= MAX_BOOTS_PER_VARIANT:
                error = self._boot_errors.get(name)
                raise MachineError(f"{name}: no more boots after {MAX_BOOTS_PER_VARIANT} "
                                   f"attempts; last error: {error}")
            guest = self._boot(name)
        return guest, guest.device(target.profile.name)

    def _boot(self, name: str) -> Guest:
        assert self.image is not None and self.accel is not None
        n = self._boots.get(name, 0) + 1
        self._boots[name] = n
        profiles = [t.profile for t in self.targets if t.transport == name and not t.na_reason]
        workdir = self.output / "artifacts" / "guests" / f"{name}-boot{n}"
        config = GuestConfig(variant=name, profiles=profiles, kernel=self.image.kernel,
                             initrd=self.image.initrd, workdir=workdir, qemu=self.qemu,
                             accelerator=self.accel.accelerator, ssh_key=self._key,
                             ssh_pubkey=self._pubkey)
        guest = Guest(config)
        log(f"booting {name} guest ({len(profiles)} device(s) under test), attempt {n}")
        record = {"variant": name, "boot": n, "workdir": str(workdir.relative_to(self.output)),
                  "devices": [d.to_json() for d in guest.devices]}
        self.guest_records.append(record)
        start = time.monotonic()
        try:
            guest.boot()
        except HarnessError as e:
            guest.close()
            record["error"] = str(e).splitlines()[0]
            self._boot_errors[name] = e
            raise
        except BaseException:
            guest.close()
            raise
        record["boot_seconds"] = round(time.monotonic() - start, 2)
        record["stages"] = guest.stage_times
        log(f"{name} guest ready in {record['boot_seconds']}s")
        self._guests[name] = guest
        return guest

    def guest_artifacts(self, guest: Guest) -> list[str]:
        return [str(p.relative_to(self.output)) for p in guest.artifacts.values()]

    def close_guest(self, name: str) -> None:
        guest = self._guests.pop(name, None)
        if guest is not None:
            guest.close()
            shutil.rmtree(guest.scratch, ignore_errors=True)

    def close(self) -> None:
        for name in list(self._guests):
            self.close_guest(name)

    def write_artifact_index(self, checks: dict[str, list[str]]) -> None:
        index = {"guests": self.guest_records, "checks": checks}
        path = self.output / "artifacts" / "index.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(index, indent=1) + "\n")

    def link_latest(self) -> None:
        """Point ``<output parent>/latest`` at this run (best effort)."""
        latest = self.output.parent / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            os.symlink(self.output.name, latest)
        except OSError:
            pass
