"""A guest: one QEMU process (plus backend daemons) from launch to teardown.

``Guest`` is a context manager.  ``boot()`` walks named stages, each with its own
deadline (process, qmp, kernel, init, ready, ssh); a missed deadline, a QEMU exit, a
guest panic or a QEMU that stops on an internal error raises ``MachineError`` at once,
carrying the command line and QEMU's output.  Whatever happens, ``close()`` asks QEMU
to quit, then kills its process group and the backends, and the artifacts stay:

    qemu-cmdline.txt  the exact command line (also a standalone reproducer)
    qemu.log          QEMU's stdout and stderr
    serial.log        the guest's console
    qmp.jsonl         every QMP command, reply and event, with timestamps
    backend-*.log     each backend daemon's output
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import socket
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import paramiko

from ..errors import DeadlineExceeded, MachineError
from ..profiles import Profile
from ..transports import VARIANTS
from .deadline import Deadline
from .layout import Location, MachineDefinition, definition_for_variant
from .processes import ChildProcess
from .qmp import QMPChannel
from .serial import SerialConsole
from .ssh import GuestShell

CONTROL_MAC = "52:54:00:c0:11:01"
GUEST_ADDR = "10.0.2.15/24"
GUEST_GW = "10.0.2.2"
# Options that shave boot time and noise, and make a panic end QEMU (-no-reboot).
BASE_KERNEL_ARGS = ("console=ttyS0 loglevel=6 iomem=relaxed panic=-1 mitigations=off tsc=reliable "
                    "no_timer_check 8250.nr_uarts=1 cryptomgr.notests random.trust_cpu=on")


def timeout_scale() -> float:
    """``VIRTIO_CONFORMANCE_TIMEOUT_SCALE`` stretches every boot deadline (slow hosts)."""
    try:
        return max(0.1, float(os.environ.get("VIRTIO_CONFORMANCE_TIMEOUT_SCALE", "1")))
    except ValueError:
        return 1.0


# Seconds per stage under TCG; KVM needs far less but the same bounds are safe.
STAGE_SECONDS = {"process": 10.0, "qmp": 10.0, "kernel": 30.0, "init": 60.0, "ready": 60.0,
                 "ssh": 30.0, "backend": 15.0}


@dataclass
class DeviceUnderTest:
    """One device in one guest: a profile on a transport, at a known location."""

    profile: Profile
    transport: str
    id: str
    location: Location

    @property
    def name(self) -> str:
        return self.profile.name

    def to_json(self) -> dict:
        return {"profile": self.profile.name, "transport": self.transport, "id": self.id,
                "virtio_id": self.profile.virtio_id, "location": self.location.to_json(),
                "qemu_device": self.profile.frontend(self.transport)}


@dataclass
class GuestConfig:
    variant: str
    profiles: list[Profile]
    kernel: Path
    initrd: Path
    workdir: Path
    qemu: str
    accelerator: str = "tcg"  # "kvm" | "tcg"
    ssh_key: paramiko.PKey | None = None
    ssh_pubkey: str = ""  # "type:base64" for the guest's authorized_keys
    extra_kernel_args: str = ""
    extra_qemu_args: list[str] = field(default_factory=list)
    boot_until: str = "ssh"  # stop waiting after this stage ("init" for a smoke boot)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # per-stage overrides


class Guest:
    def __init__(self, config: GuestConfig):
        self.config = config
        self.variant = VARIANTS[config.variant]
        self.definition: MachineDefinition = definition_for_variant(config.variant)
        self.workdir = config.workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Sockets live here, and a unix socket path must stay under 108 bytes: so a short
        # private directory in /tmp, not the (deep) output directory.
        self.scratch = Path(tempfile.mkdtemp(prefix="vc-"))
        self.devices = [
            DeviceUnderTest(p, config.variant, f"dut{i}", self.definition.device_location(i))
            for i, p in enumerate(config.profiles)
        ]
        self.process: ChildProcess | None = None
        self.backends: list[ChildProcess] = []
        self.qmp: QMPChannel | None = None
        self.serial: SerialConsole | None = None
        self.shell: GuestShell | None = None
        self.ssh_port: int | None = None
        self.argv: list[str] = []
        self.stage_times: dict[str, float] = {}
        self._t0 = 0.0

    # ---- paths of the evidence every guest leaves behind
    @property
    def artifacts(self) -> dict[str, Path]:
        found = {"qemu_cmdline": self.workdir / "qemu-cmdline.txt",
                 "qemu_log": self.workdir / "qemu.log",
                 "serial_log": self.workdir / "serial.log",
                 "qmp_transcript": self.workdir / "qmp.jsonl"}
        for log in sorted(self.workdir.glob("backend-*.log")):
            found[log.stem] = log
        return {k: v for k, v in found.items() if v.exists()}

    def device(self, profile_name: str) -> DeviceUnderTest:
        for d in self.devices:
            if d.name == profile_name:
                return d
        raise KeyError(profile_name)

    # ---- building the command line
    def _fill(self, text: str, dut: DeviceUnderTest) -> str:
        return (text.replace("{id}", dut.id).replace("{scratch}", str(self.scratch))
                .replace("{memory}", f"{self.definition.memory_mb}M"))

    def kernel_args(self) -> str:
        d = self.definition
        # RAM above mem= is outside the kernel's reach: the probe's rings and buffers
        # live there (vc.dma=base:size), where no Linux allocation can collide.
        dma_base = d.guest_memory_mb << 20
        dma_size = d.dma_mb << 20
        args = [BASE_KERNEL_ARGS, f"mem={d.guest_memory_mb}M",
                f"vc.dma=0x{dma_base:x}:0x{dma_size:x}",
                f"vc.authkey={self.config.ssh_pubkey}", f"vc.ctlmac={CONTROL_MAC}",
                f"vc.ctlmod={d.data['control_nic']['module']}", f"vc.ip={GUEST_ADDR}",
                f"vc.gw={GUEST_GW}"]
        control = d.control_location()
        if control.bus == "mmio":
            args.append(f"vc.ctlmmio=0x{control.mmio_base:x}")
        if self.config.accelerator == "tcg":
            # Under TCG the guest TSC ticks at the host's rate, but the kernel's PIT-based
            # calibration times emulated port I/O and fails on a busy host; microvm then
            # has no other reference and the boot stalls.  Tell it the rate instead.
            khz = host_tsc_khz()
            if khz:
                args.append(f"tsc_early_khz={khz}")
        if self.config.extra_kernel_args:
            args.append(self.config.extra_kernel_args)
        return " ".join(args)

    def build_argv(self, qmp_fd: int, serial_fd: int, ssh_port: int) -> list[str]:
        d = self.definition
        cfg = self.config
        shared = any(p.shared_memory for p in cfg.profiles)
        machine = d.machine + (",memory-backend=vc-mem" if shared else "")
        argv = [cfg.qemu, "-M", machine, "-accel", cfg.accelerator,
                "-cpu", "host" if cfg.accelerator == "kvm" else "max",
                "-m", f"{d.memory_mb}M", "-smp", "1",
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-chardev", f"socket,id=vc-qmp,fd={qmp_fd}", "-mon", "chardev=vc-qmp,mode=control",
                "-chardev", f"socket,id=vc-serial,fd={serial_fd}", "-serial", "chardev:vc-serial",
                "-kernel", str(cfg.kernel), "-initrd", str(cfg.initrd),
                "-append", self.kernel_args()]
        if shared:
            # vhost-user backends map guest RAM: it must be a shareable memfd.
            argv += ["-object", f"memory-backend-memfd,id=vc-mem,size={d.memory_mb}M,share=on"]
        for g in d.variant_globals(cfg.variant):
            argv += ["-global", g]
        control = d.control_location()
        nic = d.data["control_nic"]
        nic_props = "".join(f",{k}={v}" for k, v in nic.get("properties", {}).items())
        argv += ["-netdev", f"user,id=vc-ctl,hostfwd=tcp:127.0.0.1:{ssh_port}-:22",
                 "-device", f"{nic['device']},netdev=vc-ctl,mac={CONTROL_MAC},id=vc-ctl-nic,"
                            f"{control.qemu_bus}{nic_props}"]
        variant_props = d.variant_device_properties(cfg.variant)
        for dut in self.devices:
            p = dut.profile
            legacy_switch = {} if p.modern_only else variant_props
            props = {**{k: self._fill(v, dut) for k, v in p.properties.items()}, **legacy_switch}
            prop_text = "".join(f",{k}={v}" for k, v in props.items())
            argv += [self._fill(a, dut) for a in p.qemu_args]
            argv += ["-device", f"{p.frontend(cfg.variant)},id={dut.id},"
                                f"{dut.location.qemu_bus}{prop_text}"]
            argv += [self._fill(a, dut) for a in p.child_args]
        argv += cfg.extra_qemu_args
        return argv

    def reproducer(self) -> str:
        """A standalone command line: serial on stdio, no QMP socket to provide."""
        argv = list(self.argv)
        out = []
        skip = False
        for i, a in enumerate(argv):
            if skip:
                skip = False
                continue
            if a == "-chardev" and i + 1 < len(argv) and argv[i + 1].startswith("socket,id=vc-"):
                skip = True
                continue
            if a in ("-mon", "-serial") and i + 1 < len(argv) and "vc-" in argv[i + 1]:
                skip = True
                continue
            out.append(a)
        out += ["-serial", "stdio"]
        return shlex.join(out)

    # ---- lifecycle
    def __enter__(self) -> Guest:
        try:
            self.boot()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _seconds(self, stage: str) -> float:
        return self.config.stage_seconds.get(stage, STAGE_SECONDS[stage]) * timeout_scale()

    def _stage(self, name: str) -> None:
        self.stage_times[name] = round(time.monotonic() - self._t0, 3)

    def _prepare_scratch(self) -> None:
        for dut in self.devices:
            for name, size in dut.profile.scratch_files.items():
                path = self.scratch / self._fill(name, dut)
                if size == 0:
                    path.mkdir(parents=True, exist_ok=True)
                else:
                    with open(path, "wb") as f:
                        f.truncate(size)

    def _start_backends(self) -> None:
        for dut in self.devices:
            for n, backend in enumerate(dut.profile.backends):
                argv = [backend.binary] + [self._fill(a, dut) for a in backend.args]
                log = self.workdir / f"backend-{dut.id}-{n}.log"
                log.write_text("$ " + shlex.join(argv) + "\n")
                try:
                    child = ChildProcess(argv, name=f"{dut.id}-backend{n}", log_path=log)
                except OSError as e:
                    raise MachineError(f"backend {backend.binary} for {dut.name} could not "
                                       f"start: {e}", command=argv) from e
                self.backends.append(child)
                if backend.ready_socket:
                    path = Path(self._fill(backend.ready_socket, dut))
                    deadline = Deadline("backend", self._seconds("backend"))
                    while not _socket_accepts(path):
                        if not child.alive:
                            raise MachineError(
                                f"backend {backend.binary} for {dut.name} exited with "
                                f"{child.poll()} before it was ready", command=argv,
                                exitcode=child.poll(), output=child.output())
                        if deadline.expired():
                            raise DeadlineExceeded(
                                f"backend {backend.binary} for {dut.name}: socket {path} not "
                                f"ready within {deadline.seconds:.0f}s", command=argv,
                                output=child.output())
                        time.sleep(0.02)

    def boot(self) -> None:
        self._t0 = time.monotonic()
        self._prepare_scratch()
        self._start_backends()
        self._stage("backends")
        # The host-forwarded SSH port is chosen free, but another process may take it
        # before QEMU binds it: QEMU then exits at once and we try another port.
        for attempt in range(5):
            try:
                self._launch(_free_port())
                break
            except MachineError as e:
                if "host forwarding" not in e.output or attempt == 4:
                    raise
                self._teardown_qemu()
        self._wait_boot()

    def _launch(self, port: int) -> None:
        self.ssh_port = port
        qmp_ours, qmp_theirs = socket.socketpair()
        ser_ours, ser_theirs = socket.socketpair()
        self.argv = self.build_argv(qmp_theirs.fileno(), ser_theirs.fileno(), port)
        (self.workdir / "qemu-cmdline.txt").write_text(shlex.join(self.argv) + "\n\n# standalone:\n"
                                                       + self.reproducer() + "\n")
        self.serial = SerialConsole(ser_ours, self.workdir / "serial.log")
        try:
            self.process = ChildProcess(self.argv, name="qemu", log_path=self.workdir / "qemu.log",
                                        pass_fds=(qmp_theirs.fileno(), ser_theirs.fileno()))
        except OSError as e:
            raise MachineError(f"could not start {self.config.qemu}: {e}", command=self.argv) from e
        finally:
            qmp_theirs.close()
            ser_theirs.close()
        self._stage("process")
        self.qmp = QMPChannel(qmp_ours, self.workdir / "qmp.jsonl", name=self.variant.name)
        try:
            self.qmp.connect(self._seconds("qmp"))
        except Exception as e:
            time.sleep(0.2)  # let QEMU finish writing why it exited
            raise self._error(f"no QMP greeting ({e!r})", DeadlineExceeded
                              if self.process.alive else MachineError) from None
        self._stage("qmp")

    def _abort_reason(self) -> str | None:
        """Why waiting on this guest is pointless now, if it is."""
        if self.process is not None and not self.process.alive:
            return f"QEMU exited with status {self.process.poll()}"
        if self.qmp is not None and self.qmp.fatal_event is not None:
            ev = self.qmp.fatal_event
            name = ev.get("event")
            if name == "STOP":
                # A plain STOP is also how QEMU pauses on a KVM internal error; ask why.
                try:
                    status = self.qmp.command("query-status", timeout=2)
                except MachineError:
                    status = {}
                return f"QEMU stopped the guest (status {status.get('status', '?')})"
            return f"QMP event {name}: {ev.get('data', {})}"
        return None

    def _wait_boot(self) -> None:
        assert self.serial is not None
        stages = [("kernel", rb"Linux version"), ("init", rb"VC-INIT\r?\n"),
                  ("ready", rb"VC-READY\r?\n")]
        pos = 0
        for stage, pattern in stages:
            deadline = Deadline(stage, self._seconds(stage))
            m = self.serial.wait_for(pattern, deadline, pos, abort=self._abort_reason)
            if m is None:
                raise self._error(f"boot stage '{stage}' missed its {deadline.seconds:.0f}s "
                                  "deadline", DeadlineExceeded)
            if isinstance(m, str):
                raise self._error(f"boot stage '{stage}': {m}", MachineError)
            fail = re.search(rb"VC-FAIL ([^\r\n]*)", self.serial._buffer)
            if fail:
                raise self._error("guest init failed: " + fail.group(1).decode(), MachineError)
            pos = m.end()
            self._stage(stage)
            if stage == self.config.boot_until:
                return
        assert self.config.ssh_key is not None and self.ssh_port is not None
        hostkey = re.search(rb"VC-HOSTKEY (\S+ \S+)", self.serial._buffer)
        self.shell = GuestShell("127.0.0.1", self.ssh_port, self.config.ssh_key,
                                host_key=hostkey.group(1).decode() if hostkey else None)
        deadline = Deadline("ssh", self._seconds("ssh"))
        try:
            self.shell.connect(deadline, abort=self._abort_reason)
        except Exception as e:
            raise self._error(f"boot stage 'ssh': {e}", DeadlineExceeded) from None
        self._stage("ssh")

    def _error(self, message: str, kind: type[MachineError]) -> MachineError:
        output = self.process.output() if self.process else ""
        code = self.process.poll() if self.process else None
        serial_tail = self.serial.text[-3000:] if self.serial else ""
        full = (f"{self.variant.name} guest ({self.definition.name}): {message}\n"
                f"  command line: {self.workdir / 'qemu-cmdline.txt'}\n"
                f"  QEMU output:  {output.strip()[-1500:] or '(none)'}\n"
                f"  serial tail:  {serial_tail.strip()[-800:] or '(none)'}")
        return kind(full, command=self.argv, exitcode=code, output=output,
                    artifacts={k: str(v) for k, v in self.artifacts.items()})

    # ---- using a booted guest
    def run(self, command: str, **kw):
        """Run a command in the guest over SSH (see ``GuestShell.run``)."""
        if self.shell is None:
            raise MachineError("guest is not booted")
        reason = self._abort_reason()
        if reason:
            raise self._error(reason, MachineError)
        try:
            return self.shell.run(command, **kw)
        except Exception:
            reason = self._abort_reason()
            if reason:  # the guest died under the command: say so, not "SSH failed"
                raise self._error(reason, MachineError) from None
            raise

    # ---- host-side levers and oracles over QMP (device names are QEMU ids)
    def _qmp(self) -> QMPChannel:
        if self.qmp is None:
            raise MachineError("guest is not running (no QMP)")
        return self.qmp

    def set_link(self, dut: DeviceUnderTest, up: bool) -> None:
        """Carrier of a device-under-test NIC: a configuration change the device reports."""
        self._qmp().command("set_link", name=dut.id, up=up)

    def block_resize(self, dut: DeviceUnderTest, size: int) -> None:
        """Capacity of a block device under test (its node is ``<id>-disk``)."""
        self._qmp().execute("block_resize", {"node-name": f"{dut.id}-disk", "size": size})

    def balloon(self, target_bytes: int) -> None:
        """The balloon's target: guest memory size the device should ask for."""
        self._qmp().command("balloon", value=target_bytes)

    def query_pci(self) -> list[dict]:
        return self._qmp().command("query-pci")

    def virtio_path(self, dut: DeviceUnderTest) -> str:
        """The QOM path of the virtio device inside ``dut`` (for x-query-virtio-*)."""
        for entry in self._qmp().command("x-query-virtio"):
            if f"/{dut.id}/" in entry["path"] or entry["path"].endswith(f"/{dut.id}"):
                return entry["path"]
        raise MachineError(f"x-query-virtio does not list {dut.id}")

    def virtio_status(self, dut: DeviceUnderTest) -> dict:
        """QEMU's own view of the device: status, features, queue count (an oracle)."""
        return self._qmp().command("x-query-virtio-status", path=self.virtio_path(dut))

    def virtio_queue_status(self, dut: DeviceUnderTest, queue: int) -> dict:
        return self._qmp().command("x-query-virtio-queue-status", path=self.virtio_path(dut),
                                   queue=queue)

    def alive(self) -> bool:
        return self._abort_reason() is None

    def close(self) -> None:
        """Quit politely, then kill; always close channels and stop backends."""
        if self.shell is not None:
            self.shell.close()
        self._teardown_qemu()
        for child in self.backends:
            child.kill(grace=1.0)
        self.backends = []
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _teardown_qemu(self) -> None:
        if self.process is not None and self.process.alive and self.qmp is not None:
            try:
                self.qmp.command("quit", timeout=2)
            except Exception:
                pass
            self.process.wait(2.0)
        if self.process is not None:
            self.process.kill()
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.serial is not None:
            self.serial.close()


@functools.cache
def host_tsc_khz() -> int | None:
    """The host's TSC rate in kHz (None if unknown).

    Measured with ``rdtsc`` against the monotonic clock: /proc/cpuinfo's "cpu MHz" is
    the current core clock, which frequency scaling moves away from the TSC's rate.
    """
    import platform

    if platform.machine() in ("x86_64", "AMD64"):
        try:
            rdtsc = _rdtsc_function()
            t0, c0 = time.perf_counter_ns(), rdtsc()
            time.sleep(0.05)
            t1, c1 = time.perf_counter_ns(), rdtsc()
            return int((c1 - c0) * 1_000_000 / (t1 - t0))
        except (OSError, ValueError, AttributeError):
            pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _rdtsc_function():
    """A callable running the rdtsc instruction (x86-64 machine code in an exec page)."""
    import ctypes
    import mmap

    # rdtsc; shl rdx, 32; or rax, rdx; ret
    code = bytes.fromhex("0f3148c1e2204809d0c3")
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    function = ctypes.CFUNCTYPE(ctypes.c_uint64)(address)
    function._page = page  # keep the mapping alive as long as the function
    return function


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _socket_accepts(path: Path) -> bool:
    # Existence, not a test connection: virtiofsd serves exactly one client and
    # exits when it goes away, so a probing connect would kill it.
    try:
        return stat.S_ISSOCK(path.stat().st_mode)
    except OSError:
        return False
