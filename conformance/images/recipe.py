"""The guest recipe (``guest-images/recipe.toml``): parsed, checked, and put in canonical form.

Unknown keys are errors, so a typo cannot silently leave a module or package out.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from conformance.errors import ImageBuildError
from conformance.paths import guest_images_dir

RECIPE_FORMAT = 1

_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

_TOP_KEYS = {"format", "init", "overlay", "kernel", "packages", "files", "python"}
_SECTION_KEYS = {
    "kernel": {"package", "modules"},
    "packages": {"names"},
    "files": {"include", "exclude", "symlinks"},
    "python": {"compile", "sources"},
}


class RecipeError(ImageBuildError):
    """The recipe file is malformed; the message names the file and the key."""


def default_recipe_path() -> Path:
    return guest_images_dir() / "recipe.toml"


def module_key(name: str) -> str:
    """Module names compare with ``-`` and ``_`` equal, as the kernel does."""
    return name.replace("-", "_")


@dataclass(frozen=True)
class PackageRef:
    name: str
    version: str | None = None   # pinned with "name=version"

    def __str__(self) -> str:
        return f"{self.name}={self.version}" if self.version else self.name


@dataclass(frozen=True)
class Recipe:
    path: Path
    init: Path
    overlay: Path | None
    kernel_package: PackageRef
    modules: tuple[str, ...]
    packages: tuple[PackageRef, ...]
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    symlinks: dict[str, str] = field(default_factory=dict)
    python_compile: bool = False
    python_sources: bool = True

    def canonical(self) -> dict[str, Any]:
        """Everything that shapes the image, independent of where the files live."""
        return {
            "format": RECIPE_FORMAT,
            "kernel": {"package": str(self.kernel_package), "modules": sorted(self.modules)},
            "packages": sorted(str(p) for p in self.packages),
            "files": {"include": list(self.include), "exclude": list(self.exclude),
                      "symlinks": dict(sorted(self.symlinks.items()))},
            "python": {"compile": self.python_compile, "sources": self.python_sources},
        }


def _fail(path: Path, message: str) -> RecipeError:
    return RecipeError(f"{path}: {message}")


def _strings(path: Path, where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, f"{where} must be a list of non-empty strings")
    return tuple(value)


def _guest_path(path: Path, where: str, value: str) -> str:
    pure = PurePosixPath(value)
    if pure.is_absolute() or ".." in pure.parts:
        raise _fail(path, f"{where}: {value!r} must be relative to the guest root, without '..'")
    return value.rstrip("/")


def _package(path: Path, where: str, text: str) -> PackageRef:
    name, _, version = text.partition("=")
    if not _PACKAGE_NAME.match(name):
        raise _fail(path, f"{where}: {name!r} is not a Debian package name")
    return PackageRef(name, version or None)


def parse_recipe(text: str, path: Path) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"not valid TOML: {exc}") from exc
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise _fail(path, f"unknown top-level keys {sorted(unknown)}")
    for section, allowed in _SECTION_KEYS.items():
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise _fail(path, f"[{section}] must be a table")
        if set(value) - allowed:
            raise _fail(path, f"unknown keys in [{section}]: {sorted(set(value) - allowed)}")
    if data.get("format") != RECIPE_FORMAT:
        raise _fail(path, f"format must be {RECIPE_FORMAT} (this builder's recipe format)")

    base = path.parent
    init = base / str(data.get("init", "init"))
    if not init.is_file():
        raise _fail(path, f"init script {init} does not exist")
    overlay = base / str(data["overlay"]) if data.get("overlay") else None
    if overlay is not None and not overlay.is_dir():
        raise _fail(path, f"overlay directory {overlay} does not exist")

    kernel = data.get("kernel", {})
    if not isinstance(kernel.get("package"), str):
        raise _fail(path, "[kernel] package is required (e.g. \"linux-image-amd64\")")
    kernel_package = _package(path, "[kernel] package", kernel["package"])
    modules = _strings(path, "[kernel] modules", kernel.get("modules", []))
    for module in modules:
        if not _MODULE_NAME.match(module):
            raise _fail(path, f"[kernel] modules: {module!r} is not a module name")
    if len({module_key(m) for m in modules}) != len(modules):
        raise _fail(path, "[kernel] modules lists a module twice")

    names = _strings(path, "[packages] names", data.get("packages", {}).get("names", []))
    packages = tuple(_package(path, "[packages] names", n) for n in names)
    if len({p.name for p in packages}) != len(packages):
        raise _fail(path, "[packages] names lists a package twice")
    if not packages:
        raise _fail(path, "[packages] names is empty")

    files = data.get("files", {})
    include = tuple(_guest_path(path, "[files] include", p)
                    for p in _strings(path, "[files] include", files.get("include", [])))
    exclude = tuple(_guest_path(path, "[files] exclude", p)
                    for p in _strings(path, "[files] exclude", files.get("exclude", [])))
    if not include:
        raise _fail(path, "[files] include is empty")
    symlinks = files.get("symlinks", {})
    if not isinstance(symlinks, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in symlinks.items()):
        raise _fail(path, "[files.symlinks] maps guest paths to link targets (strings)")
    symlinks = {_guest_path(path, "[files.symlinks]", k): v for k, v in symlinks.items()}

    python = data.get("python", {})
    compile_flag = python.get("compile", False)
    sources_flag = python.get("sources", True)
    if not isinstance(compile_flag, bool) or not isinstance(sources_flag, bool):
        raise _fail(path, "[python] compile and sources must be true or false")
    if not sources_flag and not compile_flag:
        raise _fail(path, "[python] sources = false needs compile = true (else no stdlib)")

    return Recipe(path=path, init=init, overlay=overlay, kernel_package=kernel_package,
                  modules=modules, packages=packages, include=include, exclude=exclude,
                  symlinks=symlinks, python_compile=compile_flag,
                  python_sources=sources_flag)


def load_recipe(path: Path | None = None) -> Recipe:
    path = Path(path) if path is not None else default_recipe_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise RecipeError(f"cannot read the guest recipe {path}: {exc}") from exc
    return parse_recipe(text, path)
