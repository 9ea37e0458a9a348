"""The guest's serial console: always drained, always logged, searchable by waiters.

QEMU writes the console into one end of a socketpair.  A reader thread drains it all
the time (a full socket would stall the guest), writes it to ``serial.log`` through
pexpect's logfile, and keeps it in memory so waiters can search it from any offset.
"""

from __future__ import annotations

import re
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pexpect
from pexpect import fdpexpect

from .deadline import Deadline

PANIC_RE = re.compile(rb"Kernel panic - not syncing[^\r\n]*")


class SerialConsole:
    def __init__(self, sock: socket.socket, log_path: Path):
        self._sock = sock
        self.log_path = log_path
        self._logfile = open(log_path, "wb")
        self._child = fdpexpect.fdspawn(sock.fileno(), logfile=None)
        self._child.logfile_read = self._logfile
        self._buffer = bytearray()
        self._cond = threading.Condition()
        self.closed = False
        self._thread = threading.Thread(target=self._drain, name="serial", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = self._child.read_nonblocking(65536, timeout=0.5)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError, ValueError):
                break
            with self._cond:
                self._buffer += data
                self._cond.notify_all()
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return self._buffer.decode("utf-8", "replace")

    def offset(self) -> int:
        with self._cond:
            return len(self._buffer)

    def panic(self) -> str | None:
        with self._cond:
            m = PANIC_RE.search(self._buffer)
        return m.group(0).decode("utf-8", "replace") if m else None

    def wait_for(self, pattern: str | bytes, deadline: Deadline, start: int = 0,
                 abort: Callable[[], str | None] | None = None) -> re.Match | str | None:
        """Wait until ``pattern`` appears after ``start``.

        Returns the match; ``None`` when the deadline passed; or a string saying why
        waiting stopped early (console closed, kernel panic, or what ``abort`` said).
        """
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        with self._cond:
            while True:
                m = regex.search(self._buffer, start)
                if m:
                    return m
                m = PANIC_RE.search(self._buffer, start)
                if m:
                    return "guest kernel panic: " + m.group(0).decode("utf-8", "replace")
                if self.closed:
                    return "serial console closed (QEMU exited?)"
                if abort is not None:
                    reason = abort()
                    if reason:
                        return reason
                if deadline.expired():
                    return None
                self._cond.wait(min(0.1, deadline.remaining()))

    def send(self, text: str) -> None:
        self._sock.sendall(text.encode())

    def run(self, command: str, deadline: Deadline) -> tuple[int | None, str]:
        """Run a command on the serial root shell (a fallback when SSH is down)."""
        tag = uuid.uuid4().hex[:8]
        start = self.offset()
        self.send(f"{command}; echo VC-DONE-{tag}-$?\n")
        m = self.wait_for(rf"VC-DONE-{tag}-(\d+)\r?\n".encode(), deadline, start)
        if not isinstance(m, re.Match):
            return None, self.text[start:]
        out = bytes(self._buffer[start:m.start()]).decode("utf-8", "replace")
        return int(m.group(1)), out

    def close(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(2.0)
        self._sock.close()
        self._logfile.close()
