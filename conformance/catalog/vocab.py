"""Names the catalog is written in: levels, actors, methods, transports, device types.

Shared by the generator (``specparse``) and the loader (the package itself), kept apart
so that running the generator as a script does not import it twice.
"""

from __future__ import annotations

from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent
CLAUSES_FILE = CATALOG_DIR / "clauses.json"
ANNOTATIONS_FILE = CATALOG_DIR / "annotations.json"
PROPOSALS_FILE = CATALOG_DIR / "proposals.json"

LEVELS = ("MUST", "MUST NOT", "SHOULD", "SHOULD NOT", "MAY")
ACTORS = ("device", "driver")
STATUSES = ("normative", "draft")
TESTABLE = ("yes", "partly", "no")
METHODS = ("register-probe", "driver-bound", "qmp-oracle", "not-from-guest")
TRANSPORT_NAMES = ("mmio", "mmio-legacy", "pci", "pci-transitional")

# The heading commands LaTeX numbers (secnumdepth is 5 in the spec), outermost first.
SECTION_COMMANDS = ("chapter", "section", "subsection", "subsubsection", "paragraph",
                    "subparagraph")

# Virtio device ids of the device chapters in scope, keyed by the spec's own
# directory name under device-types/ (used as the area suffix: device/<name>).
DEVICE_CHAPTERS: dict[str, tuple[str, int]] = {
    "Network Device": ("net", 1),
    "Block Device": ("blk", 2),
    "Console Device": ("console", 3),
    "Entropy Device": ("entropy", 4),
    "Traditional Memory Balloon Device": ("balloon", 5),
    "SCSI Host Device": ("scsi", 8),
    "GPU Device": ("gpu", 16),
    "Input Device": ("input", 18),
    "Socket Device": ("vsock", 19),
    "File System Device": ("fs", 26),
}
DEVICE_IDS: dict[str, int] = {name: ident for name, ident in DEVICE_CHAPTERS.values()}
