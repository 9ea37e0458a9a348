"""A writer (and a small reader) for the cpio "newc" format the kernel unpacks as initramfs.

Written in Python so the image needs no root: device nodes such as /dev/console and
root-owned files are just header fields here.  Output is deterministic: the caller picks
the order, inode numbers count up, and every entry gets the same modification time.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

NEWC_MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
           "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")
_HEADER_LEN = 6 + 8 * len(_FIELDS)
_COPY_CHUNK = 1 << 20


def _pad4(length: int) -> bytes:
    return b"\0" * (-length % 4)


class NewcWriter:
    """Appends entries to a binary stream; ``close()`` writes the trailer."""

    def __init__(self, stream: BinaryIO, *, mtime: int = 0):
        self._out = stream
        self._mtime = mtime
        self._next_ino = 1
        self._offset = 0
        self._names: set[str] = set()
        self.closed = False

    @property
    def bytes_written(self) -> int:
        return self._offset

    def _write(self, data: bytes) -> None:
        self._out.write(data)
        self._offset += len(data)

    def _header(self, name: str, mode: int, size: int, *, nlink: int = 1,
                rdev: tuple[int, int] = (0, 0), ino: int | None = None) -> None:
        if self.closed:
            raise ValueError("cpio archive already closed")
        name = name.lstrip("/") or "."
        if name != TRAILER:
            if name in self._names:
                raise ValueError(f"duplicate cpio entry {name!r}")
            self._names.add(name)
        encoded = name.encode() + b"\0"
        if ino is None:
            ino = self._next_ino
            self._next_ino += 1
        values = (ino, mode, 0, 0, nlink, self._mtime, size, 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        header = NEWC_MAGIC + b"".join(b"%08X" % v for v in values)
        self._write(header + encoded + _pad4(_HEADER_LEN + len(encoded)))

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        self._header(name, stat.S_IFDIR | perm, 0, nlink=2)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._header(name, stat.S_IFREG | perm, len(data))
        self._write(data + _pad4(len(data)))

    def add_file_from(self, name: str, source: Path, perm: int | None = None) -> None:
        """Streams a host file in without reading it whole into memory."""
        st = source.stat()
        mode = stat.S_IMODE(st.st_mode) if perm is None else perm
        self._header(name, stat.S_IFREG | mode, st.st_size)
        copied = 0
        with open(source, "rb") as src:
            while chunk := src.read(_COPY_CHUNK):
                self._write(chunk)
                copied += len(chunk)
        if copied != st.st_size:
            raise OSError(f"{source} changed size while being archived")
        self._write(_pad4(copied))

    def add_symlink(self, name: str, target: str) -> None:
        data = target.encode()
        self._header(name, stat.S_IFLNK | 0o777, len(data))
        self._write(data + _pad4(len(data)))

    def add_char_device(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._header(name, stat.S_IFCHR | perm, 0, rdev=(major, minor))

    def close(self) -> None:
        if not self.closed:
            self._header(TRAILER, 0, 0, ino=0)
            self.closed = True


@dataclass(frozen=True)
class Entry:
    name: str
    mode: int
    data: bytes
    rdev: tuple[int, int] = (0, 0)
    mtime: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_file(self) -> bool:
        return stat.S_ISREG(self.mode)


def read_newc(data: bytes) -> Iterator[Entry]:
    """Parses a newc archive (used by the tests and to inspect a built initrd)."""
    pos = 0
    while True:
        if data[pos:pos + 6] != NEWC_MAGIC:
            raise ValueError(f"bad cpio magic at offset {pos}")
        fields = dict(zip(_FIELDS, (int(data[pos + 6 + 8 * i: pos + 14 + 8 * i], 16)
                                    for i in range(len(_FIELDS))), strict=True))
        name_start = pos + _HEADER_LEN
        name = data[name_start:name_start + fields["namesize"] - 1].decode()
        pos = name_start + fields["namesize"]
        pos += -pos % 4
        body = data[pos:pos + fields["filesize"]]
        pos += fields["filesize"]
        pos += -pos % 4
        if name == TRAILER:
            return
        yield Entry(name, fields["mode"], body, (fields["rdevmajor"], fields["rdevminor"]),
                    fields["mtime"])
