"""Finding the QEMU binary and what it is."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import cache

from ..errors import ConfigError

QEMU_ENV = "VIRTIO_CONFORMANCE_QEMU"


@cache
def find_qemu() -> str:
    """The QEMU system emulator to use: ``$VIRTIO_CONFORMANCE_QEMU`` or qemu-system-x86_64."""
    wanted = os.environ.get(QEMU_ENV, "qemu-system-x86_64")
    path = wanted if os.path.isabs(wanted) else shutil.which(wanted)
    if not path or not os.access(path, os.X_OK):
        raise ConfigError(
            f"QEMU binary {wanted!r} not found. Install it (apt-get install qemu-system-x86) "
            f"or point {QEMU_ENV} at a qemu-system-x86_64 build.")
    return path


@cache
def qemu_version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True,
                             timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ConfigError(f"{binary} --version failed: {e}") from None
    m = re.search(r"version (\S+)(.*)", out)
    return (m.group(1) + m.group(2).rstrip()) if m else out.strip().splitlines()[0]
