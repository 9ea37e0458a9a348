"""Child processes (QEMU, backend daemons) that cannot outlive the run.

Three layers, because each covers a hole in the others:

1. every child gets its own process group and is killed with it (a daemon that forks
   is still caught), and the kernel sends it SIGKILL if this process dies without
   cleaning up (``PR_SET_PDEATHSIG``: covers ``kill -9`` of pytest);
2. a registry kills whatever is still running at interpreter exit, and SIGTERM is
   turned into an orderly exit so that fixtures' teardown runs;
3. every child carries ``VIRTIO_CONFORMANCE_RUN=<run id>`` in its environment, so an
   end-of-run scan of ``/proc`` finds survivors that escaped the first two.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

RUN_ENV = "VIRTIO_CONFORMANCE_RUN"
# A caller may choose the tag (to find this run's children itself); otherwise a fresh
# one.  It is given to each child explicitly and never exported to this process's own
# environment, so a nested run gets a tag of its own and cannot reap its parent's QEMUs.
RUN_ID = os.environ.get(RUN_ENV) or uuid.uuid4().hex[:12]

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ChildProcess:
    """One child process in its own process group, with its output in a file."""

    def __init__(self, argv: list[str], *, name: str, log_path: Path,
                 pass_fds: tuple[int, ...] = (), env: dict[str, str] | None = None,
                 cwd: Path | None = None):
        self.argv = argv
        self.name = name
        self.log_path = log_path
        child_env = dict(os.environ if env is None else env)
        child_env.setdefault(RUN_ENV, RUN_ID)  # an explicit env may carry its own run tag
        self._log = open(log_path, "ab")
        try:
            self.popen = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                pass_fds=pass_fds, env=child_env, cwd=cwd, start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except BaseException:
            self._log.close()
            raise
        self.pid = self.popen.pid
        _registry.add(self)

    def poll(self) -> int | None:
        return self.popen.poll()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self, limit: int = 20000) -> str:
        """The tail of what the process printed (its stdout and stderr)."""
        self._log.flush()
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-limit:].decode("utf-8", "replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self, grace: float = 0.0) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL it."""
        if self.alive and grace > 0:
            self._signal_group(signal.SIGTERM)
            self.wait(grace)
        # Kill the group even when the leader is gone: a forked daemon may remain.
        self._signal_group(signal.SIGKILL)
        code = self.wait(5.0)
        self._log.close()
        _registry.discard(self)
        return code

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


class _Registry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._children: set[ChildProcess] = set()

    def add(self, child: ChildProcess) -> None:
        with self._lock:
            self._children.add(child)

    def discard(self, child: ChildProcess) -> None:
        with self._lock:
            self._children.discard(child)

    def kill_all(self) -> None:
        with self._lock:
            children = list(self._children)
        for child in children:
            child.kill()


_registry = _Registry()
atexit.register(_registry.kill_all)


def kill_all_children() -> None:
    _registry.kill_all()


def install_signal_handlers() -> None:
    """Make SIGTERM (and SIGHUP) unwind like Ctrl-C, so every teardown runs.

    Only from the main thread, and only once; a second signal kills the children at
    once, in case teardown itself hangs.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    state = {"seen": False}

    def handler(signum, frame):
        if state["seen"]:
            kill_all_children()
            os._exit(130)
        state["seen"] = True
        raise KeyboardInterrupt(f"received signal {signal.Signals(signum).name}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def survivors(run_id: str = RUN_ID) -> list[tuple[int, str]]:
    """Processes other than this one that carry this run's tag: (pid, command line)."""
    found = []
    me = os.getpid()
    tag = f"{RUN_ENV}={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
            if tag not in environ.split(b"\0"):
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                "utf-8", "replace").strip()
        except OSError:
            continue
        # Only our children count: QEMU and daemons, not a nested Python of the suite.
        if cmdline and "python" not in cmdline.split(" ")[0]:
            found.append((int(entry.name), cmdline))
    return found


def reap_survivors(run_id: str = RUN_ID, wait: float = 2.0) -> list[tuple[int, str]]:
    """Kill any survivor of this run; return what had to be killed (an error to report)."""
    deadline = time.monotonic() + wait
    found = survivors(run_id)
    # A child being torn down right now may still be exiting: give it a moment.
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = survivors(run_id)
    for pid, _ in found:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found
