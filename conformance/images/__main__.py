"""``python -m conformance.images``: build (or find) the guest image, print its manifest path.

Progress goes to stderr; stdout carries only the manifest path (or the manifest itself
with ``--json``), so scripts can use it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from conformance.errors import ImageBuildError
from conformance.images.builder import build_image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conformance.images",
                                     description="Build the guest kernel + initramfs.")
    parser.add_argument("--recipe", type=Path, help="recipe.toml (default: the shipped one)")
    parser.add_argument("--cache-dir", type=Path,
                        help="cache root (default: $VIRTIO_CONFORMANCE_CACHE or XDG cache)")
    parser.add_argument("--rebuild", action="store_true",
                        help="build even if the image is cached (e.g. after apt-get update)")
    parser.add_argument("--json", action="store_true", help="print the manifest, not its path")
    args = parser.parse_args(argv)

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        image = build_image(args.recipe, args.cache_dir, progress, rebuild=args.rebuild)
    except ImageBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(image.manifest, indent=2))
    else:
        print(image.manifest_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
