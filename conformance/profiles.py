"""Device profiles: declarative descriptions of a device under test.

A profile is one TOML file; its stem is its name.  It says which transport variants
the device supports, which QEMU ``-device`` (and helper arguments) create it, which
backend daemons must run first, and what the host must provide.  Placeholders in
strings are filled per guest:

- ``{id}``       unique id of this device instance in its guest (also its QEMU id)
- ``{scratch}``  a private directory for this guest's files and sockets
- ``{memory}``   the guest's RAM size, e.g. ``512M`` (vhost-user backends may need it)

See ``fixtures/README.md`` for the format, with every field.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError
from .paths import fixtures_dir
from .transports import ALL_VARIANTS, VARIANTS

SIZE_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


@dataclass(frozen=True)
class Backend:
    binary: str
    args: tuple[str, ...]
    ready_socket: str = ""  # a unix socket path whose appearance means "ready"


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    description: str
    virtio_id: int
    variants: tuple[str, ...]
    device: str  # QEMU device family, e.g. "virtio-blk"
    device_mmio: str  # the QEMU device name on virtio-mmio, e.g. "virtio-blk-device"
    device_pci: str  # ... on virtio-pci, e.g. "virtio-blk-pci"
    properties: dict[str, str] = field(default_factory=dict)
    qemu_args: tuple[str, ...] = ()  # placed before the device (backends, drives)
    child_args: tuple[str, ...] = ()  # placed after it (devices plugged into its bus)
    scratch_files: dict[str, int] = field(default_factory=dict)  # name -> size in bytes
    backends: tuple[Backend, ...] = ()
    shared_memory: bool = False  # vhost-user: guest RAM must be shareable (memfd)
    modern_only: bool = False  # the QEMU device has no legacy interface switch at all
    requires_paths: tuple[str, ...] = ()  # host paths without which the device cannot exist
    expect: dict = field(default_factory=dict)  # expectations a check may read

    def frontend(self, transport: str) -> str:
        return self.device_pci if VARIANTS[transport].bus == "pci" else self.device_mmio

    def missing_host_requirements(self) -> list[str]:
        """What the host lacks for this device (binaries, device nodes), in words."""
        missing = [f"{p} does not exist" for p in self.requires_paths if not os.path.exists(p)]
        for b in self.backends:
            if not _find_binary(b.binary):
                missing.append(f"backend binary {b.binary!r} not found")
        return missing


def _find_binary(name: str) -> str | None:
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name)


def _size(text: object, where: str) -> int:
    s = str(text).strip().upper()
    try:
        if s and s[-1] in SIZE_SUFFIX:
            return int(s[:-1]) * SIZE_SUFFIX[s[-1]]
        return int(s)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a size (e.g. 64M)") from None


_KNOWN_KEYS = {"description", "virtio_id", "variants", "device", "device_mmio", "device_pci",
               "properties", "qemu_args", "child_args", "scratch_files", "backend", "shared_memory",
               "modern_only",
               "requires_paths", "expect"}


def load_profile(path: Path) -> Profile:
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"profile {where} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"profile {where} is not valid TOML: {e}") from None

    def need(key: str, kind: type | tuple[type, ...]):
        if key not in data:
            raise ConfigError(f"profile {where}: required field '{key}' is missing")
        value = data[key]
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ConfigError(f"profile {where}: field '{key}' must be "
                              f"{getattr(kind, '__name__', kind)}, not {type(value).__name__}")
        return value

    unknown = set(data) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(f"profile {where}: unknown field(s) {', '.join(sorted(unknown))} "
                          f"(known: {', '.join(sorted(_KNOWN_KEYS))})")
    virtio_id = need("virtio_id", int)
    if not 1 <= virtio_id <= 0x3F:
        raise ConfigError(f"profile {where}: field 'virtio_id' {virtio_id} is outside 1..63")
    variants = need("variants", list)
    for v in variants:
        if v not in VARIANTS:
            raise ConfigError(f"profile {where}: field 'variants' names {v!r}; "
                              f"valid: {', '.join(ALL_VARIANTS)}")
    device = need("device", str)
    modern_only = bool(data.get("modern_only", False))
    if modern_only and "pci-transitional" in variants:
        raise ConfigError(f"profile {where}: a 'modern_only' device cannot support the "
                          "pci-transitional variant")
    props = data.get("properties", {})
    if not isinstance(props, dict):
        raise ConfigError(f"profile {where}: field 'properties' must be a table")
    arg_lists = {}
    for key in ("qemu_args", "child_args"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ConfigError(f"profile {where}: field '{key}' must be a list of strings")
        arg_lists[key] = tuple(value)
    scratch = data.get("scratch_files", {})
    if not isinstance(scratch, dict):
        raise ConfigError(f"profile {where}: field 'scratch_files' must be a table")
    backends = []
    raw_backends = data.get("backend", [])
    if not isinstance(raw_backends, list):
        raise ConfigError(f"profile {where}: 'backend' must be an array of tables ([[backend]])")
    for i, b in enumerate(raw_backends):
        if not isinstance(b, dict) or not isinstance(b.get("binary"), str):
            raise ConfigError(f"profile {where}: backend[{i}] needs a string field 'binary'")
        args = b.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ConfigError(f"profile {where}: backend[{i}].args must be a list of strings")
        backends.append(Backend(b["binary"], tuple(args), str(b.get("ready_socket", ""))))
    return Profile(
        name=path.stem,
        path=path,
        description=str(data.get("description", "")),
        virtio_id=virtio_id,
        variants=tuple(variants),
        device=device,
        device_mmio=str(data.get("device_mmio", f"{device}-device")),
        device_pci=str(data.get("device_pci", f"{device}-pci")),
        properties={str(k): str(v) for k, v in props.items()},
        qemu_args=arg_lists["qemu_args"],
        child_args=arg_lists["child_args"],
        scratch_files={str(k): _size(v, f"profile {where}: scratch_files.{k}")
                       for k, v in scratch.items()},
        backends=tuple(backends),
        shared_memory=bool(data.get("shared_memory", False)),
        modern_only=modern_only,
        requires_paths=tuple(str(p) for p in data.get("requires_paths", [])),
        expect=dict(data.get("expect", {})),
    )


def shipped_profiles_dir() -> Path:
    return fixtures_dir() / "profiles"


def shipped_profiles() -> list[Profile]:
    return [load_profile(p) for p in sorted(shipped_profiles_dir().glob("*.toml"))]


def resolve_profile(name_or_path: str) -> Profile:
    """``--profile`` takes a shipped profile's name or a path to a TOML file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or os.sep in name_or_path:
        return load_profile(candidate)
    shipped = shipped_profiles_dir() / f"{name_or_path}.toml"
    if shipped.exists():
        return load_profile(shipped)
    names = sorted(p.stem for p in shipped_profiles_dir().glob("*.toml"))
    raise ConfigError(f"no profile named {name_or_path!r}; shipped profiles: {', '.join(names)}"
                      " (or give a path to a .toml file)")
