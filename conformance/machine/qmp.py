"""QMP over a socketpair, with a transcript of every command, reply and event.

The client (qemu.qmp's asyncio ``QMPClient``) lives on its own event-loop thread so
events are read the moment QEMU sends them: a STOP on an internal error or a
GUEST_PANICKED is seen even while the harness is busy in an SSH call.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient
from qemu.qmp.qmp_client import ExecuteError

from ..errors import MachineError

# Events that mean the guest can no longer answer: the harness stops waiting at once.
FATAL_EVENTS = {"GUEST_PANICKED", "SHUTDOWN", "STOP", "GUEST_CRASHLOADED"}


class QMPChannel:
    def __init__(self, sock: socket.socket, transcript: Path, name: str = "qemu"):
        self._sock = sock
        self._transcript = open(transcript, "a", buffering=1)
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self.events: list[dict] = []
        self.fatal_event: dict | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"qmp-{name}", daemon=True)
        self._thread.start()
        self._client = QMPClient(name)
        self._watcher: Any = None

    def _log(self, kind: str, payload: Any) -> None:
        line = json.dumps({"t": round(time.monotonic() - self._t0, 3), kind: payload},
                          default=str)
        with self._lock:
            if not self._transcript.closed:
                self._transcript.write(line + "\n")

    def _run(self, coro, timeout: float):
        future = asyncio.run_coroutine_threadsafe(asyncio.wait_for(coro, timeout), self._loop)
        try:
            return future.result(timeout + 1.0)
        except TimeoutError:
            future.cancel()
            raise

    def connect(self, timeout: float) -> dict:
        """Wait for QEMU's greeting and negotiate capabilities."""
        self._run(self._client.connect(self._sock), timeout)
        greeting = self._client.greeting
        self._log("greeting", greeting._raw if greeting is not None else None)
        self._watcher = asyncio.run_coroutine_threadsafe(self._watch_events(), self._loop)
        return dict(greeting._raw) if greeting is not None else {}

    async def _watch_events(self) -> None:
        with self._client.listener() as listener:
            async for event in listener:
                raw = dict(event)
                self._log("event", raw)
                self.events.append(raw)
                if raw.get("event") in FATAL_EVENTS and self.fatal_event is None:
                    self.fatal_event = raw

    def command(self, name: str, /, timeout: float = 10.0, **arguments: Any) -> Any:
        """Run one QMP command; a QMP error or a dead monitor raises ``MachineError``.

        ``name`` is positional-only: QMP commands have arguments called ``name`` too.
        """
        return self.execute(name, arguments, timeout)

    def execute(self, name: str, arguments: dict[str, Any], timeout: float = 10.0) -> Any:
        """Like ``command``, for arguments whose names are not Python names (node-name)."""
        self._log("execute", {"execute": name, "arguments": arguments})
        try:
            reply = self._run(self._client.execute(name, arguments or None), timeout)
        except ExecuteError as e:
            self._log("error", str(e))
            raise MachineError(f"QMP {name} failed: {e}") from e
        except TimeoutError:
            self._log("error", f"no reply within {timeout}s")
            raise MachineError(f"QMP {name}: no reply within {timeout:.0f}s") from None
        except Exception as e:  # disconnects, protocol errors
            self._log("error", repr(e))
            raise MachineError(f"QMP {name} failed: {e!r}") from e
        self._log("return", reply)
        return reply

    def events_named(self, name: str) -> list[dict]:
        return [e for e in self.events if e.get("event") == name]

    def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
        try:
            self._run(self._client.disconnect(), 2.0)
        except Exception:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(2.0)
        if not self._loop.is_running():
            self._loop.close()
        with self._lock:
            self._transcript.close()
