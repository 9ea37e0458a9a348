"""Debian packages through apt's ordinary clients: resolve, download, unpack.

No root-only step is used: ``apt-get download`` fetches a .deb into a directory of our
choosing and ``dpkg-deb -x`` unpacks its files without running maintainer scripts.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import ImageBuildError

_APT_ENV = {"LC_ALL": "C", "DEBIAN_FRONTEND": "noninteractive"}


@dataclass(frozen=True)
class DebPackage:
    """One exact version of one binary package, as apt describes it."""

    name: str
    version: str
    architecture: str
    sha256: str | None = None
    size: int | None = None
    depends: str = ""

    @property
    def filename(self) -> str:
        # Same spelling as apt-get download's output (epoch colon escaped).
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


def require_apt() -> None:
    missing = [tool for tool in ("apt-get", "apt-cache", "dpkg-deb") if not shutil.which(tool)]
    if missing:
        raise ImageBuildError(
            f"{', '.join(missing)} not found: the guest image is built from Debian 12 "
            "(bookworm) packages with apt. Build it on a Debian 12 host (or container) "
            "and point VIRTIO_CONFORMANCE_CACHE at the resulting cache directory.")


def _run(argv: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, **_APT_ENV)
    try:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                              check=False)
    except FileNotFoundError as exc:
        require_apt()
        raise ImageBuildError(f"cannot run {argv[0]}: {exc}") from exc


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def parse_control(text: str) -> list[dict[str, str]]:
    """The paragraphs of a Debian control-format text (continuation lines joined)."""
    records: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                records.append(fields)
            fields, key = {}, None
            continue
        if line[0] in " \t" and key:
            fields[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        key = key.strip()
        fields[key] = value.strip()
    if fields:
        records.append(fields)
    return records


def _package(record: dict[str, str]) -> DebPackage:
    size = record.get("Size")
    return DebPackage(name=record["Package"], version=record["Version"],
                      architecture=record.get("Architecture", "amd64"),
                      sha256=record.get("SHA256"), size=int(size) if size else None,
                      depends=record.get("Depends", ""))


def resolve_many(wanted: list[tuple[str, str | None]]) -> list[DebPackage]:
    """The versions apt would install (or the pinned ones), in one apt-cache call.

    Nothing is downloaded; apt's package lists must be present (``apt-get update``).
    """
    if not wanted:
        return []
    specs = [f"{name}={version}" if version else name for name, version in wanted]
    proc = _run(["apt-cache", "show", "--no-all-versions", *specs])
    found: dict[tuple[str, str], DebPackage] = {}
    latest: dict[str, DebPackage] = {}
    for record in parse_control(proc.stdout):
        if record.get("Package") and record.get("Version"):
            package = _package(record)
            found[(package.name, package.version)] = package
            latest.setdefault(package.name, package)
    result: list[DebPackage] = []
    missing: list[str] = []
    for (name, version), spec in zip(wanted, specs, strict=True):
        match = found.get((name, version)) if version else latest.get(name)
        if match is None:
            missing.append(spec)
        else:
            result.append(match)
    if missing:
        raise ImageBuildError(
            f"Debian package(s) {', '.join(missing)} not known to apt "
            f"({_tail(proc.stderr, 3) or 'apt-cache has no record of them'}). Run `apt-get update` (as root) so the "
            "package lists are current; the recipe names Debian 12 (bookworm) packages.")
    return result


def resolve(name: str, version: str | None = None) -> DebPackage:
    return resolve_many([(name, version)])[0]


_KERNEL_DEP = re.compile(r"^(linux-image-[^\s(|,]+)(?:\s*\(\s*=\s*([^)\s]+)\s*\))?")


_KERNEL_ABI_PACKAGE = re.compile(r"^linux-image-\d")


def kernel_behind(package: DebPackage) -> DebPackage:
    """The exact kernel package a meta package (``linux-image-amd64``) points at.

    An ABI package (``linux-image-6.1.0-NN-amd64``) is returned as it is.
    """
    if _KERNEL_ABI_PACKAGE.match(package.name):
        return package
    for dependency in package.depends.split(","):
        match = _KERNEL_DEP.match(dependency.strip())
        if match:
            return resolve(match.group(1), match.group(2))
    raise ImageBuildError(f"{package.name} does not depend on any linux-image-* package "
                          f"(Depends: {package.depends!r}); name the kernel package directly "
                          "in [kernel] package of the recipe.")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _is_cached(package: DebPackage, target: Path) -> bool:
    return target.is_file() and (package.sha256 is None or sha256_file(target) == package.sha256)


def fetch_many(packages: list[DebPackage], debs_dir: Path) -> dict[str, Path]:
    """The .deb of each package in the download cache; missing ones are fetched together
    with one ``apt-get download`` (into a private directory, then moved in place)."""
    found = {p.name: debs_dir / p.filename for p in packages}
    missing = [p for p in packages if not _is_cached(p, found[p.name])]
    if not missing:
        return found
    partial = debs_dir / f".partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        proc = _run(["apt-get", "download", "-q", *(p.spec for p in missing)], cwd=partial)
        absent = [p.spec for p in missing if not (partial / p.filename).is_file()]
        if proc.returncode != 0 or absent:
            raise ImageBuildError(
                f"could not download Debian package(s) {', '.join(absent) or '(see below)'}:\n"
                f"{_tail(proc.stderr + proc.stdout)}\n"
                "Check network access to the Debian mirror and run `apt-get update` (as root) "
                "so apt's lists match what the mirror serves.")
        for package in missing:
            downloaded = partial / package.filename
            if package.sha256 and sha256_file(downloaded) != package.sha256:
                raise ImageBuildError(f"{downloaded.name}: SHA256 differs from apt's record; "
                                      "run `apt-get update` and build again.")
            os.replace(downloaded, found[package.name])
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return found


def fetch(package: DebPackage, debs_dir: Path) -> Path:
    """One package's .deb from the download cache, fetched if not there yet."""
    return fetch_many([package], debs_dir)[package.name]


def extract(deb: Path, destination: Path) -> None:
    """Unpacks a package's files (no maintainer scripts run)."""
    destination.mkdir(parents=True, exist_ok=True)
    proc = _run(["dpkg-deb", "-x", str(deb), str(destination)])
    if proc.returncode != 0:
        raise ImageBuildError(f"dpkg-deb -x {deb.name} failed: {_tail(proc.stderr)}. "
                              f"Delete {deb} so it is downloaded again.")
