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
from .machine.layout import definition_for_variant
from .machine.processes import RUN_ID
from .machine.qemu import find_qemu, qemu_version
from .machine.ssh import new_keypair
from .profiles import Profile, resolve_profile, shipped_profiles
from .transports import ALL_VARIANTS, variant

SPEC_REVISION = "virtio-v1.4-cs01"
# Bounded boots: a shared guest gets two tries before the variant falls back to one guest
# per device; each such guest gets two tries of its own.
MAX_BOOTS_SHARED = 2
MAX_BOOTS_ISOLATED = 2


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
        self._ssh_key: paramiko.PKey | None = None
        self._pubkey = ""
        self._guests: dict[tuple[str, str], Guest] = {}
        self._boots: dict[tuple[str, str], int] = {}
        self._boot_errors: dict[tuple[str, str], HarnessError] = {}
        self._isolated: set[str] = set()
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
        for t in wanted:
            room = definition_for_variant(t).max_devices
            count = sum(1 for x in targets if x.transport == t and not x.na_reason)
            if count > room:
                raise ConfigError(f"{count} devices under test on {t}, but its guest holds "
                                  f"{room}: select fewer with --profile, or run {t} in parts")
        return targets

    # ---- run-wide preparation (once)
    def prepare(self) -> None:
        from .images.builder import build_image

        self.qemu = find_qemu()
        self.image = build_image(progress=log)
        self.accel = choose_accelerator(self.qemu, self.image.kernel, self.image.initrd,
                                        self.image.digest, progress=log)
        log(f"accelerator: {self.accel.accelerator} ({self.accel.reason})")
        self._ssh_key, self._pubkey = new_keypair()
        # Only now: a run stopped by bad configuration leaves no empty output behind.
        self.output.mkdir(parents=True, exist_ok=True)

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
    # A guest is keyed by (variant, group): group "*" is the shared guest holding every
    # device of the variant.  If the shared guest cannot boot or dies (a device that
    # crashes QEMU, a backend that will not start), the variant switches to one guest per
    # device, so one bad device cannot take the others' results with it.
    SHARED = "*"

    def _key(self, target: Target) -> tuple[str, str]:
        if target.transport in self._isolated:
            return (target.transport, target.profile.name)
        return (target.transport, self.SHARED)

    def guest_for(self, target: Target) -> tuple[Guest, DeviceUnderTest]:
        """The booted guest holding ``target``'s device (booting it on first use)."""
        key = self._key(target)
        guest = self._guests.get(key)
        if guest is not None and not guest.alive():
            reason = guest._abort_reason()
            label = "shared" if key[1] == self.SHARED else key[1]
            log(f"{key[0]} guest ({label}) died: {reason}")
            self.infra_errors.append(f"{key[0]} guest ({label}) died: {reason}")
            self._close_key(key)
            if key[1] == self.SHARED:
                self._isolate(key[0])
                key = self._key(target)
            guest = self._guests.get(key)
        if guest is None:
            guest = self._boot_or_isolate(key, target)
        return guest, guest.device(target.profile.name)

    def _isolate(self, variant_name: str) -> None:
        if variant_name not in self._isolated:
            log(f"{variant_name}: from now on each device gets its own guest")
            self._isolated.add(variant_name)

    def _boot_or_isolate(self, key: tuple[str, str], target: Target) -> Guest:
        limit = MAX_BOOTS_SHARED if key[1] == self.SHARED else MAX_BOOTS_ISOLATED
        if self._boots.get(key, 0) >= limit:
            raise MachineError(f"{target.id}: not booting again after {limit} attempt(s); "
                               f"last error: {self._boot_errors.get(key)}")
        try:
            return self._boot(key)
        except HarnessError:
            if key[1] != self.SHARED:
                raise
            self._isolate(key[0])
            return self._boot_or_isolate(self._key(target), target)

    def _boot(self, key: tuple[str, str]) -> Guest:
        assert self.image is not None and self.accel is not None
        name, group = key
        n = self._boots.get(key, 0) + 1
        self._boots[key] = n
        profiles = [t.profile for t in self.targets if t.transport == name and not t.na_reason
                    and (group == self.SHARED or t.profile.name == group)]
        label = name if group == self.SHARED else f"{name}-{group}"
        workdir = self.output / "artifacts" / "guests" / f"{label}-boot{n}"
        config = GuestConfig(variant=name, profiles=profiles, kernel=self.image.kernel,
                             initrd=self.image.initrd, workdir=workdir, qemu=self.qemu,
                             accelerator=self.accel.accelerator, ssh_key=self._ssh_key,
                             ssh_pubkey=self._pubkey)
        guest = Guest(config)
        log(f"booting {label} guest ({len(profiles)} device(s) under test), attempt {n}")
        record = {"variant": name, "group": group, "boot": n,
                  "workdir": str(workdir.relative_to(self.output)),
                  "devices": [d.to_json() for d in guest.devices]}
        self.guest_records.append(record)
        start = time.monotonic()
        try:
            guest.boot()
        except HarnessError as e:
            guest.close()
            record["error"] = str(e).splitlines()[0]
            self._boot_errors[key] = e
            log(f"{label} guest did not boot: {record['error']}")
            raise
        except BaseException:
            guest.close()
            raise
        record["boot_seconds"] = round(time.monotonic() - start, 2)
        record["stages"] = guest.stage_times
        log(f"{label} guest ready in {record['boot_seconds']}s")
        self._guests[key] = guest
        return guest

    def guest_of(self, target: Target) -> Guest | None:
        """The running guest that holds ``target``, if any (for evidence)."""
        return self._guests.get(self._key(target))

    def guest_artifacts(self, guest: Guest) -> list[str]:
        return [str(p.relative_to(self.output)) for p in guest.artifacts.values()]

    def _close_key(self, key: tuple[str, str]) -> None:
        guest = self._guests.pop(key, None)
        if guest is not None:
            guest.close()

    def close_guest(self, variant_name: str, profile: str | None = None) -> None:
        """Close the guests of a variant (or, when isolated, of one device) once done."""
        for key in list(self._guests):
            if key[0] == variant_name and (profile is None or key[1] == profile):
                self._close_key(key)

    def close(self) -> None:
        for key in list(self._guests):
            self._close_key(key)

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
