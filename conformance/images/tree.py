"""The guest's file tree, assembled from unpacked packages in the merged-/usr layout.

Bookworm packages still put files in /bin, /sbin, /lib and /lib64; the image moves them
under /usr and links the old top-level names to it, as an installed Debian 12 does.
Each path is then owned by one package, and symlinks can be followed inside the image
to pull in what they point at.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import ImageBuildError
from conformance.images import elf

MERGED_DIRS = ("bin", "sbin", "lib", "lib64", "lib32", "libx32")
_MAX_SYMLINK_HOPS = 40


def merged_usr(path: str) -> str:
    """A package path (relative, no leading slash) as it lives in the merged-/usr image."""
    path = path.strip("/")
    head = path.split("/", 1)[0]
    return f"usr/{path}" if head in MERGED_DIRS else path


@dataclass
class Node:
    """One entry of the guest tree: a host file to copy, a directory, or a symlink."""

    kind: str                   # "file" | "dir" | "symlink"
    mode: int = 0o644           # permission bits
    source: Path | None = None  # host file (kind == "file")
    data: bytes | None = None   # literal contents (kind == "file", generated)
    target: str | None = None   # link target (kind == "symlink")
    origin: str = ""            # package name, "overlay", "builder", ...


def compile_patterns(patterns: tuple[str, ...] | list[str]) -> re.Pattern[str] | None:
    """One regex that matches a path named by any pattern, or anything below it."""
    if not patterns:
        return None
    parts = []
    for pattern in patterns:
        parts.append(fnmatch.translate(pattern))
        parts.append(fnmatch.translate(pattern + "/*"))
    return re.compile("|".join(parts))


class PackageTree:
    """All files of the unpacked packages, keyed by their merged-/usr guest path."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}

    def add_package(self, name: str, root: Path) -> None:
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            for entry in dirnames + filenames:
                host = Path(dirpath) / entry
                original = entry if rel_dir == "." else f"{rel_dir}/{entry}"
                self._add(name, original, host)

    def _add(self, package: str, original: str, host: Path) -> None:
        st = host.lstat()
        guest = merged_usr(original)
        if stat.S_ISDIR(st.st_mode):
            if guest not in self.nodes:
                self.nodes[guest] = Node("dir", stat.S_IMODE(st.st_mode), origin=package)
            return
        if stat.S_ISLNK(st.st_mode):
            target = os.readlink(host)
            if not target.startswith("/") and guest != original:
                # Relative targets were written for the old location; pin them down.
                target = "/" + posixpath.normpath(
                    posixpath.join(posixpath.dirname(original), target))
            node = Node("symlink", 0o777, target=target, origin=package)
        elif stat.S_ISREG(st.st_mode):
            node = Node("file", stat.S_IMODE(st.st_mode), source=host, origin=package)
        else:
            return  # packages do not ship device nodes or fifos
        existing = self.nodes.get(guest)
        if existing is not None and existing.kind != "dir" and not _same(existing, node):
            raise ImageBuildError(f"/{guest} is shipped by both {existing.origin} and "
                                  f"{package} with different contents; drop one of them "
                                  "from the recipe")
        self.nodes[guest] = node

    def resolve(self, path: str) -> str | None:
        """Follows symlinks (in any component) to the real entry; None if it dangles."""
        parts = merged_usr(path).split("/")
        done: list[str] = []
        hops = 0
        while parts:
            part = parts.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                if done:
                    done.pop()
                continue
            current = merged_usr("/".join(done + [part]))
            node = self.nodes.get(current)
            if node is None:
                if not parts:
                    return None
                # A directory only implied by the paths below it (dpkg-deb lists them all,
                # but the top-level aliases such as lib64 are the image's own).
                done = current.split("/")
                continue
            if node.kind == "symlink":
                hops += 1
                if hops > _MAX_SYMLINK_HOPS:
                    return None
                assert node.target is not None
                if node.target.startswith("/"):
                    done = []
                    parts = node.target.strip("/").split("/") + parts
                else:
                    parts = node.target.split("/") + parts
                continue
            done = current.split("/")
        return "/".join(done)

    def symlink_chain(self, path: str) -> list[str]:
        """Every symlink passed on the way from ``path`` to its target (guest paths)."""
        chain = []
        current = merged_usr(path)
        for _ in range(_MAX_SYMLINK_HOPS):
            node = self.nodes.get(current)
            if node is None or node.kind != "symlink":
                break
            chain.append(current)
            assert node.target is not None
            base = "" if node.target.startswith("/") else posixpath.dirname(current)
            current = merged_usr(posixpath.normpath(posixpath.join(base, node.target)).lstrip("/"))
        return chain


class Selection:
    """The package files chosen for the image, closed over symlinks and shared libraries."""

    def __init__(self, tree: PackageTree):
        self.tree = tree
        self.nodes: dict[str, Node] = {}

    def add_matching(self, include: tuple[str, ...] | list[str],
                     exclude: tuple[str, ...] | list[str], why: str) -> None:
        """Every file or symlink named by an ``include`` pattern and by no ``exclude`` one.

        A pattern without wildcards must name something, so a typo cannot go unnoticed.
        """
        wanted = compile_patterns(include)
        unwanted = compile_patterns(exclude)
        if wanted is None:
            return
        for path, node in self.tree.nodes.items():
            if node.kind == "dir" or not wanted.match(path):
                continue
            if unwanted is not None and unwanted.match(path):
                continue
            self.require(path, why)
        for pattern in include:
            if any(ch in pattern for ch in "*?["):
                continue
            if pattern not in self.tree.nodes and not any(
                    p.startswith(pattern + "/") for p in self.tree.nodes):
                raise ImageBuildError(f"/{pattern} ({why}) is in none of the recipe's "
                                      "packages; add the package that ships it to "
                                      "[packages] names, or fix the path")

    def require(self, path: str, why: str) -> None:
        """Adds a path, every symlink on the way to its target, and the target itself."""
        path = merged_usr(path)
        if path in self.nodes:
            return
        for link in self.tree.symlink_chain(path):
            self.nodes[link] = self.tree.nodes[link]
        real = self.tree.resolve(path)
        if real is None:
            raise ImageBuildError(f"/{path} (wanted by {why}) is in none of the recipe's "
                                  "packages, or is a symlink to nothing; add the package that "
                                  "ships it to [packages] names")
        node = self.tree.nodes[real]
        if node.kind != "dir":
            self.nodes[real] = node

    def add_needed_libraries(self, library_dirs: tuple[str, ...]) -> None:
        """Adds what the dynamic loader will look for, for every ELF file selected so far.

        ``library_dirs`` are searched after a file's own RUNPATH, as the loader does
        without an ld.so.cache.  A library no package ships is an error that names it.
        """
        pending = [p for p, n in self.nodes.items()
                   if n.kind == "file" and n.source is not None and elf.is_elf(n.source)]
        checked: set[str] = set()
        while pending:
            path = pending.pop()
            if path in checked:
                continue
            checked.add(path)
            source = self.nodes[path].source
            assert source is not None
            info = elf.dynamic_info(source)
            if info.interpreter:
                self.require(info.interpreter, f"/{path} (its ELF interpreter)")
            origin = "/" + posixpath.dirname(path)
            dirs = [d.replace("${ORIGIN}", origin).replace("$ORIGIN", origin).lstrip("/")
                    for d in info.runpath] + list(library_dirs)
            for library in info.needed:
                found = next((f"{d}/{library}" for d in dirs
                              if self.tree.resolve(f"{d}/{library}") is not None), None)
                if found is None:
                    raise ImageBuildError(
                        f"library {library} (needed by /{path}) is in none of the recipe's "
                        "packages; add the Debian package that ships it to [packages] names "
                        f"(find it with `dpkg -S {library}` or `apt-file search {library}`)")
                self.require(found, f"/{path}")
                real = self.tree.resolve(found)
                if real is not None and real not in checked:
                    pending.append(real)


def _same(a: Node, b: Node) -> bool:
    if a.kind != b.kind:
        return False
    if a.kind == "symlink":
        return a.target == b.target
    if a.source is None or b.source is None:
        return False
    return a.source.read_bytes() == b.source.read_bytes()
