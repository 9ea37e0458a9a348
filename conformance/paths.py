"""Where installed data lives and where the run writes (one place for both)."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path


def _data_dir(package: str, top_level: str) -> Path:
    """An installed data package, or its top-level folder when run from a checkout.

    An installed wheel carries ``guest-images/`` and ``fixtures/`` inside the package;
    ``python -m conformance.cli`` from a source checkout imports the package from the
    tree, where they sit beside it.
    """
    try:
        return Path(str(resources.files(package)))
    except ModuleNotFoundError:
        checkout = Path(__file__).resolve().parent.parent / top_level
        if checkout.is_dir():
            return checkout
        raise


def guest_images_dir() -> Path:
    """The guest recipe and init script (top-level ``guest-images/`` in the repo)."""
    return _data_dir("conformance.guest_images", "guest-images")


def fixtures_dir() -> Path:
    """Shipped device profiles and machine definitions (top-level ``fixtures/``)."""
    return _data_dir("conformance.fixtures", "fixtures")


def probe_dir() -> Path:
    """The stdlib-only in-guest probe package, pushed into each guest."""
    return Path(str(resources.files("conformance.probe")))


def cache_dir() -> Path:
    """Content-addressed cache for guest images and accelerator probes.

    ``VIRTIO_CONFORMANCE_CACHE`` overrides; otherwise the XDG cache dir.
    """
    env = os.environ.get("VIRTIO_CONFORMANCE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "virtio-conformance"


def probe_archive() -> bytes:
    """The in-guest probe as a tar archive of package ``vcprobe`` (pushed over SSH stdin)."""
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for f in sorted(probe_dir().glob("*.py")):
            tar.add(str(f), arcname=f"vcprobe/{f.name}")
    return buf.getvalue()


# Where the probe lands in the guest, and the command that unpacks it there.
PROBE_GUEST_DIR = "/opt/vc"
PROBE_UNPACK = f"rm -rf {PROBE_GUEST_DIR} && mkdir -p {PROBE_GUEST_DIR} && tar -x -C {PROBE_GUEST_DIR}"
