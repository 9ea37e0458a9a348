"""Builds the guest (PVH vmlinux + uncompressed newc initramfs) and caches it by content.

The image is addressed by a digest of what shapes it: the recipe (parsed, so comments do
not count), the init script, the overlay files and this builder's version.  A finished
image lives in ``<cache>/images/<digest>/``; it is built in a temporary directory next to
it and renamed into place, so a killed build never leaves a half image behind.  Builds of
one digest are serialised with a lock file, so parallel test workers share one build.

Package versions are what apt offers at build time; they are recorded in the manifest,
not in the digest (run ``python -m conformance.images --rebuild`` after an
``apt-get update`` to pick up new ones).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import py_compile
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance import paths
from conformance.errors import CacheDirError, ImageBuildError
from conformance.images import debian
from conformance.images.cpio import NewcWriter
from conformance.images.kernel import ModuleTree, extract_vmlinux, modules_alias, modules_dep
from conformance.images.recipe import Recipe, load_recipe
from conformance.images.tree import Node, PackageTree, Selection, merged_usr

# Bump when a change here changes the image for the same recipe.
BUILDER_VERSION = "1"

MANIFEST_NAME = "manifest.json"
KERNEL_NAME = "vmlinux"
INITRD_NAME = "initrd"

# Searched for DT_NEEDED libraries when a file has no RUNPATH that finds them; the same
# directories Debian's dynamic loader searches without an ld.so.cache.
LIBRARY_DIRS = ("usr/lib/x86_64-linux-gnu", "usr/lib", "usr/lib64")

# The top-level names an installed Debian 12 links into /usr.
ROOT_ALIASES = {"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"}
SKELETON_DIRS = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755, "tmp": 0o1777,
                 "root": 0o700, "etc": 0o755, "etc/dropbear": 0o700, "mnt": 0o755,
                 "var": 0o755, "var/log": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755}

Progress = Callable[[str], None]


@dataclass
class GuestImage:
    """A built guest: boot ``kernel`` with ``initrd``; ``manifest`` says what is inside."""

    kernel: Path
    initrd: Path
    digest: str
    manifest: dict[str, Any] = field(repr=False)
    manifest_path: Path

    @property
    def directory(self) -> Path:
        return self.manifest_path.parent

    @property
    def kernel_release(self) -> str:
        return str(self.manifest["kernel"]["release"])


# --- content address -----------------------------------------------------------------

def _overlay_files(recipe: Recipe) -> list[tuple[str, Path]]:
    if recipe.overlay is None:
        return []
    found = []
    for path in sorted(recipe.overlay.rglob("*")):
        rel = path.relative_to(recipe.overlay).as_posix()
        if path.is_file() and "__pycache__" not in rel and not path.name.startswith("."):
            found.append((rel, path))
    return found


def image_digest(recipe: Recipe | Path | None = None) -> str:
    """The content address of the image a recipe describes (no apt, no network)."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    overlay = {rel: [hashlib.sha256(p.read_bytes()).hexdigest(), os.access(p, os.X_OK)]
               for rel, p in _overlay_files(recipe)}
    content = {
        "builder": BUILDER_VERSION,
        "recipe": recipe.canonical(),
        "init": hashlib.sha256(recipe.init.read_bytes()).hexdigest(),
        "overlay": overlay,
    }
    blob = json.dumps(content, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


# --- cache -----------------------------------------------------------------------------

def images_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or paths.cache_dir()) / "images"


def _writable_dir(path: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise CacheDirError(
            f"the image cache directory {path} is not writable ({exc.strerror or exc}). "
            "Set VIRTIO_CONFORMANCE_CACHE to a writable directory.") from exc
    return path


@contextlib.contextmanager
def _locked(lock_path: Path, *, blocking: bool = True) -> Iterator[bool]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lock_path(root: Path, digest: str) -> Path:
    return root / ".locks" / f"{digest}.lock"


def load_cached(digest: str, cache_dir: Path | None = None, *,
                deep: bool = False) -> GuestImage | None:
    """The finished image for ``digest`` if it is complete (``deep``: hashes checked too)."""
    directory = images_dir(cache_dir) / digest
    manifest_path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("digest") != digest:
        return None
    image = GuestImage(kernel=directory / KERNEL_NAME, initrd=directory / INITRD_NAME,
                       digest=digest, manifest=manifest, manifest_path=manifest_path)
    for path, key in ((image.kernel, "kernel"), (image.initrd, "initrd")):
        record = manifest.get(key, {})
        try:
            if path.stat().st_size != record.get("size"):
                return None
        except OSError:
            return None
        if deep and debian.sha256_file(path) != record.get("sha256"):
            return None
    return image


def _clean_stale(root: Path, digest: str) -> None:
    """Removes temporary build directories that no live build owns.

    Called with ``digest``'s lock held, so its own leftovers are stale for sure; other
    digests' leftovers are removed only if their lock is free.
    """
    for leftover in root.glob(".tmp-*"):
        owner = leftover.name.split("-")[1] if leftover.name.count("-") >= 2 else ""
        if owner == digest:
            shutil.rmtree(leftover, ignore_errors=True)
            continue
        with _locked(_lock_path(root, owner), blocking=False) as free:
            if free:
                shutil.rmtree(leftover, ignore_errors=True)


# --- the build ---------------------------------------------------------------------------

def build_image(recipe: Path | None = None, cache_dir: Path | None = None,
                progress: Progress | None = None, *, rebuild: bool = False) -> GuestImage:
    """The guest image for ``recipe`` (default: the shipped one), built if not cached.

    ``cache_dir`` defaults to ``conformance.paths.cache_dir()``; ``progress`` receives one
    line per step.  Raises ImageBuildError with a message that says what to do.
    """
    say = progress or (lambda _line: None)
    parsed = load_recipe(recipe)
    digest = image_digest(parsed)
    root = _writable_dir(images_dir(cache_dir))
    if not rebuild:
        cached = load_cached(digest, cache_dir)
        if cached is not None:
            say(f"image {digest[:12]} is cached: {cached.directory}")
            return cached

    with _locked(_lock_path(root, digest)):
        final = root / digest
        if not rebuild:
            cached = load_cached(digest, cache_dir)
            if cached is not None:  # another process built it while we waited
                say(f"image {digest[:12]} was built by another process: {cached.directory}")
                return cached
        _clean_stale(root, digest)
        staging = root / f".tmp-{digest}-{os.getpid()}"
        staging.mkdir()
        try:
            manifest = _Build(parsed, digest, staging,
                              _writable_dir((cache_dir or paths.cache_dir()) / "debs"),
                              say).run()
            if final.exists():
                shutil.rmtree(final)
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    say(f"image {digest[:12]} ready: {final}")
    image = load_cached(digest, cache_dir)
    if image is None:
        raise ImageBuildError(f"the image just built in {final} does not validate "
                              f"(manifest {manifest.get('digest')}); remove it and retry")
    return image


class _Build:
    """One build in a staging directory; ``run()`` leaves kernel, initrd and manifest there."""

    def __init__(self, recipe: Recipe, digest: str, staging: Path, debs_dir: Path,
                 say: Progress):
        self.recipe = recipe
        self.digest = digest
        self.staging = staging
        self.work = staging / "work"
        self.debs_dir = debs_dir
        self.say = say
        self.tree = PackageTree()
        self.selection = Selection(self.tree)
        # guest path -> what goes there; the selection adds package files, the build the rest
        self.selected: dict[str, Node] = self.selection.nodes
        self.started = time.monotonic()

    def run(self) -> dict[str, Any]:
        debian.require_apt()
        packages, kernel_package = self._resolve()
        debs = self._fetch([kernel_package, *packages])
        self._unpack(packages, debs)
        kernel_root = self.work / "kernel"
        self.say(f"unpacking {kernel_package.name} (kernel and modules)")
        debian.extract(debs[kernel_package.name], kernel_root)
        kernel_info = self._kernel(kernel_package, kernel_root)
        self._select_files()
        self._add_busybox_applets()
        self._compile_python()
        self._add_skeleton()
        initrd_info = self._write_initrd()
        shutil.rmtree(self.work)
        manifest = {
            "digest": self.digest,
            "builder_version": BUILDER_VERSION,
            "built": datetime.now(UTC).isoformat(timespec="seconds"),
            "build_seconds": round(time.monotonic() - self.started, 1),
            "recipe": str(self.recipe.path),
            "kernel": kernel_info,
            "initrd": initrd_info,
            "packages": {p.name: p.version for p in [kernel_package, *packages]},
            "debs": {p.name: {"version": p.version, "file": p.filename, "sha256": p.sha256}
                     for p in [kernel_package, *packages]},
        }
        (self.staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    # packages

    def _resolve(self) -> tuple[list[debian.DebPackage], debian.DebPackage]:
        self.say(f"resolving {len(self.recipe.packages) + 1} packages with apt-cache")
        kernel_ref = self.recipe.kernel_package
        resolved = debian.resolve_many([(kernel_ref.name, kernel_ref.version)] +
                                       [(p.name, p.version) for p in self.recipe.packages])
        kernel = debian.kernel_behind(resolved[0])
        self.say(f"kernel package: {kernel.name} {kernel.version}")
        return resolved[1:], kernel

    def _fetch(self, packages: list[debian.DebPackage]) -> dict[str, Path]:
        missing = [p for p in packages if not (self.debs_dir / p.filename).is_file()]
        if missing:
            size = sum(p.size or 0 for p in missing) / 1e6
            self.say(f"downloading {len(missing)} packages ({size:.1f} MB): "
                     + ", ".join(p.name for p in missing))
        return debian.fetch_many(packages, self.debs_dir)

    def _unpack(self, packages: list[debian.DebPackage], debs: dict[str, Path]) -> None:
        self.say(f"unpacking {len(packages)} packages")
        for package in packages:
            destination = self.work / "packages" / package.name
            debian.extract(debs[package.name], destination)
            self.tree.add_package(package.name, destination)

    # kernel

    def _kernel(self, package: debian.DebPackage, root: Path) -> dict[str, Any]:
        modules = ModuleTree.find(root)
        release = modules.version
        bzimage = root / "boot" / f"vmlinuz-{release}"
        if not bzimage.is_file():
            raise ImageBuildError(f"{package.name} has no /boot/vmlinuz-{release}")
        self.say(f"extracting the PVH vmlinux from vmlinuz-{release}")
        kernel_path = self.staging / KERNEL_NAME
        entry = extract_vmlinux(bzimage, kernel_path)

        chosen, builtin = modules.closure(self.recipe.modules)
        extra = len(chosen) - (len(self.recipe.modules) - len(builtin))
        self.say(f"kernel modules: {len(chosen)} ({extra} pulled in as dependencies)")
        base = f"usr/lib/modules/{release}"
        for module in chosen:
            self.selected[f"{base}/{module.path}"] = Node(
                "file", 0o644, source=modules.directory / module.path, origin=package.name)
        self.selected[f"{base}/modules.dep"] = Node(
            "file", data=modules_dep(modules, chosen).encode(), origin="builder")
        self.selected[f"{base}/modules.alias"] = Node(
            "file", data=modules_alias(chosen).encode(), origin="builder")
        for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
            if (modules.directory / name).is_file():
                self.selected[f"{base}/{name}"] = Node(
                    "file", 0o644, source=modules.directory / name, origin=package.name)
        return {
            "file": KERNEL_NAME,
            "package": package.name,
            "version": package.version,
            "release": release,
            "format": "elf-pvh",
            "pvh_entry": f"{entry:#x}",
            "size": kernel_path.stat().st_size,
            "sha256": debian.sha256_file(kernel_path),
            "modules": sorted(m.name for m in chosen),
            "modules_builtin": sorted(builtin),
        }

    # files

    def _select_files(self) -> None:
        self.selection.add_matching(self.recipe.include, self.recipe.exclude,
                                    f"[files] include of {self.recipe.path.name}")
        for path, target in self.recipe.symlinks.items():
            self.selected[path] = Node("symlink", target=target, origin="recipe")
        self.selection.add_needed_libraries(LIBRARY_DIRS)
        self.say(f"files from packages: {sum(n.kind == 'file' for n in self.selected.values())}")

    def _add_busybox_applets(self) -> None:
        """Links every busybox applet that no package file already provides.

        busybox is static, so asking it for its applet list runs on any x86-64 host; if it
        cannot run here, /init installs the links at boot instead.
        """
        busybox = self.selected.get("usr/bin/busybox")
        self.selected.setdefault("usr/bin/sh", Node("symlink", target="busybox", origin="builder"))
        if busybox is None or busybox.source is None:
            return
        try:
            listing = subprocess.run([str(busybox.source), "--list-full"], capture_output=True,
                                     text=True, timeout=30, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            self.say("busybox cannot run on this host: /init will link its applets at boot")
            return
        added = 0
        for line in listing.split():
            guest = merged_usr(line)
            if not guest.startswith(("usr/bin/", "usr/sbin/")) or guest in self.selected:
                continue
            self.selected[guest] = Node("symlink", target="/usr/bin/busybox", origin="busybox")
            added += 1
        self.say(f"busybox applets linked: {added}")

    def _compile_python(self) -> None:
        """Byte-compiles the shipped standard library with this interpreter, if it matches.

        Unchecked-hash .pyc files are used as they are, whatever the file times in the
        image; without them the guest would compile every module it imports at each boot.
        """
        if not self.recipe.python_compile:
            return
        # A .pyc is only valid for the interpreter version that wrote it.
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        sources = sorted(p for p, n in self.selected.items()
                         if n.kind == "file" and p.startswith(f"usr/lib/{version}/")
                         and p.endswith(".py"))
        if not sources:
            self.say(f"not byte-compiling: the builder runs {version}, the image has another "
                     "Python (its modules compile in the guest on first import)")
            return
        tag = sys.implementation.cache_tag
        out_root = self.work / "pyc"
        compiled = 0
        for path in sources:
            node = self.selected[path]
            assert node.source is not None
            directory, name = path.rsplit("/", 1)
            if self.recipe.python_sources:
                pyc = f"{directory}/__pycache__/{name[:-3]}.{tag}.pyc"
            else:
                pyc = path + "c"  # sourceless: the .pyc takes the .py's place
            target = out_root / pyc
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                py_compile.compile(str(node.source), cfile=str(target), dfile="/" + path,
                                   doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            except py_compile.PyCompileError:
                continue  # a file this interpreter cannot parse simply stays source-only
            self.selected[pyc] = Node("file", 0o644, source=target, origin="builder")
            if not self.recipe.python_sources:
                del self.selected[path]
            compiled += 1
        self.say(f"byte-compiled {compiled} standard library modules"
                 f"{'' if self.recipe.python_sources else ' (shipped without sources)'}")

    def _add_skeleton(self) -> None:
        for path, perm in SKELETON_DIRS.items():
            self.selected.setdefault(path, Node("dir", perm, origin="builder"))
        for alias, target in ROOT_ALIASES.items():
            self.selected[alias] = Node("symlink", target=target, origin="builder")
        self.selected["var/run"] = Node("symlink", target="/run", origin="builder")
        self.selected["init"] = Node("file", 0o755, source=self.recipe.init, origin="recipe")
        for rel, host_file in _overlay_files(self.recipe):
            mode = 0o755 if os.access(host_file, os.X_OK) else 0o644
            if rel == "etc/shadow":
                mode = 0o600
            self.selected[rel] = Node("file", mode, source=host_file, origin="overlay")

    def _write_initrd(self) -> dict[str, Any]:
        entries: dict[str, Node] = {}
        for path, node in self.selected.items():
            parts = path.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent in ROOT_ALIASES:
                    raise ImageBuildError(f"/{path}: not in the merged-/usr layout")
                entries.setdefault(parent, self.selected.get(parent) or Node("dir", 0o755))
            entries[path] = node
        target = self.staging / INITRD_NAME
        self.say(f"writing the initramfs ({len(entries)} entries)")
        with open(target, "wb") as out:
            writer = NewcWriter(out)
            # The kernel opens /dev/console for init before devtmpfs exists.
            writer.add_dir("dev", 0o755)
            writer.add_char_device("dev/console", 5, 1, 0o600)
            for path in sorted(entries):
                node = entries[path]
                if path == "dev":
                    continue
                if node.kind == "dir":
                    writer.add_dir(path, node.mode)
                elif node.kind == "symlink":
                    assert node.target is not None
                    writer.add_symlink(path, node.target)
                elif node.data is not None:
                    writer.add_file(path, node.data, node.mode)
                else:
                    assert node.source is not None
                    writer.add_file_from(path, node.source, node.mode)
            writer.close()
        return {
            "file": INITRD_NAME,
            "format": "newc",
            "compression": "none",
            "entries": len(entries) + 1,
            "size": target.stat().st_size,
            "sha256": debian.sha256_file(target),
        }
