"""Real guests: boot both machines, reach them, and prove the harness cleans up.

Marked ``guest``: each boots QEMU under the accelerator the probe picks (TCG here).
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from conformance.errors import DeadlineExceeded, MachineError
from conformance.machine.accel import choose_accelerator
from conformance.machine.guest import Guest, GuestConfig
from conformance.machine.processes import RUN_ENV, survivors
from conformance.machine.qemu import find_qemu
from conformance.machine.ssh import new_keypair
from conformance.profiles import resolve_profile

pytestmark = pytest.mark.guest

# The command as installed next to this Python (what a user runs), not the source tree.
CLI = str(Path(sys.executable).parent / "virtio-conformance")


@pytest.fixture(scope="module")
def image():
    from conformance.images.builder import build_image

    return build_image()


@pytest.fixture(scope="module")
def accel(image):
    return choose_accelerator(find_qemu(), image.kernel, image.initrd, image.digest).accelerator


@pytest.fixture(scope="module")
def keypair():
    return new_keypair()


def _config(tmp_path, image, accel, keypair, variant, profiles, **kw):
    key, pub = keypair
    return GuestConfig(variant=variant, profiles=[resolve_profile(p) for p in profiles],
                       kernel=image.kernel, initrd=image.initrd, workdir=tmp_path,
                       qemu=find_qemu(), accelerator=accel, ssh_key=key, ssh_pubkey=pub, **kw)


def test_microvm_boots_with_devices_under_test_left_unbound(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "mmio", ["virtio-rng", "virtio-blk"])
    with Guest(config) as guest:
        # Only the control NIC is a virtio device in the guest: the devices under test
        # never reached the virtio bus, so no Linux driver touched them.
        out = guest.run("ls /sys/bus/virtio/devices; cat /proc/iomem | grep LNRO0005",
                        check=True).stdout
        assert out.split().count("virtio0") == 1 and "virtio1" not in out
        assert "feb02c00" in out and "feb02a00" in out  # where the harness put them
        assert guest.run("python3 -c 'import mmap, ctypes, json; print(7)'",
                         check=True).stdout.strip() == "7"
        stages = guest.stage_times
        assert stages["process"] <= stages["qmp"] <= stages["kernel"] <= stages["ready"]
    for name in ("qemu_cmdline", "qemu_log", "serial_log", "qmp_transcript"):
        assert guest.artifacts[name].exists()
    assert "VC-READY" in (tmp_path / "serial.log").read_text(errors="replace")
    assert '"execute": "quit"' in (tmp_path / "qmp.jsonl").read_text()


def test_q35_boots_with_devices_under_test_left_unbound(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "pci-transitional", ["virtio-net"])
    with Guest(config) as guest:
        assert guest.run("test -e /sys/bus/pci/devices/0000:00:03.0/driver").exitcode != 0
        assert guest.run("cat /sys/bus/pci/devices/0000:00:03.0/vendor",
                         check=True).stdout.strip() == "0x1af4"
        guest.shell.push("/tmp/pushed", b"over the exec channel\n")
        assert guest.run("cat /tmp/pushed", check=True).stdout == "over the exec channel\n"
        # QMP helpers later checks use.
        assert any(d.get("bus") == 0 for d in guest.qmp.command("query-pci"))


def test_missed_deadline_names_its_stage(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "mmio", [],
                     stage_seconds={"init": 0.05})
    with pytest.raises(DeadlineExceeded, match="boot stage 'init' missed"):
        with Guest(config):
            pass


def test_qemu_dying_under_a_command_is_a_machine_error(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "mmio", [])
    with Guest(config) as guest:
        os.kill(guest.process.pid, signal.SIGKILL)
        guest.process.wait(5)
        with pytest.raises(MachineError, match="QEMU exited"):
            guest.run("true")


def test_guest_panic_is_seen_at_once(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "mmio", [])
    with Guest(config) as guest:
        guest.run("echo c > /proc/sysrq-trigger &", timeout=10)
        deadline = time.monotonic() + 20
        while guest.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not guest.alive()
        assert guest.serial.panic()


def test_interrupted_run_leaves_no_qemu_and_keeps_results(tmp_path):
    run_tag = uuid.uuid4().hex
    env = dict(os.environ, **{RUN_ENV: run_tag})
    out = tmp_path / "out"
    proc = subprocess.Popen([CLI, "run", "--profile",
                             "virtio-rng", "--transport", "pci", "--transport", "mmio",
                             "--output", str(out)], env=env, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    # Wait for a guest holding the device under test (not the one-time KVM smoke boot).
    while not [c for _, c in survivors(run_tag) if "virtio-rng" in c]:
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no QEMU appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert code == 130, proc.stderr.read()
    time.sleep(0.2)
    assert survivors(run_tag) == []
    assert (out / "results.json").exists()


def test_default_style_run_writes_every_report(tmp_path):
    out = tmp_path / "out"
    code = subprocess.run([CLI, "run", "--profile",
                           "virtio-blk", "--profile", "vhost-user-blk", "--profile",
                           "vhost-vsock", "--transport", "pci", "--check", "test_pci_identity",
                           "--check", "test_pci_capabilities", "--output", str(out)],
                          timeout=600).returncode
    assert code in (0, 1)
    for name in ("results.json", "junit.xml", "report.html", "report.md",
                 "artifacts/index.json"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    by_device = {}
    for r in results["results"]:
        by_device.setdefault(r["device"], set()).add(r["verdict"])
    assert "PASS" in by_device["virtio-blk"] and "PASS" in by_device["vhost-user-blk"]
    # No /dev/vhost-vsock here: NA with the reason, never a crash or a silent skip.
    if not Path("/dev/vhost-vsock").exists():
        assert by_device["vhost-vsock"] == {"NA"}
        vsock = next(c for c in results["checks"] if c["device"] == "vhost-vsock")
        assert "/dev/vhost-vsock" in vsock["message"]


def test_a_device_that_breaks_its_guest_costs_only_its_own_results(tmp_path):
    # A mutant "device": its backend dies at once, so the shared guest cannot boot.
    broken = tmp_path / "broken-backend.toml"
    broken.write_text('virtio_id = 2\nvariants = ["pci"]\ndevice = "vhost-user-blk"\n'
                      'properties = { chardev = "{id}-chr" }\nshared_memory = true\n'
                      'qemu_args = ["-chardev", "socket,id={id}-chr,path={scratch}/{id}.sock"]\n'
                      '[[backend]]\nbinary = "sh"\nargs = ["-c", "echo refusing; exit 3"]\n'
                      'ready_socket = "{scratch}/{id}.sock"\n')
    out = tmp_path / "out"
    code = subprocess.run([CLI, "run", "--profile",
                           "virtio-rng", "--profile", str(broken), "--transport", "pci",
                           "--check", "test_pci_identity", "--output", str(out)],
                          timeout=600).returncode
    assert code == 3  # no finding, but a harness error left checks without a verdict
    results = json.loads((out / "results.json").read_text())
    verdicts = {(r["device"], r["clause"]): r["verdict"] for r in results["results"]}
    assert verdicts[("virtio-rng", "transport/pci/pci-device-discovery/1")] == "PASS"
    assert verdicts[("broken-backend", "transport/pci/pci-device-discovery/1")] == "ERROR"
    error = next(c for c in results["checks"]
                 if c["device"] == "broken-backend" and c["verdict"] == "ERROR")
    assert "exited with 3 before it was ready" in error["message"]


def test_qmp_levers_reach_devices_under_test(tmp_path, image, accel, keypair):
    config = _config(tmp_path, image, accel, keypair, "pci", ["virtio-net", "virtio-blk"])
    with Guest(config) as guest:
        net, blk = guest.device("virtio-net"), guest.device("virtio-blk")
        status = guest.virtio_status(blk)
        assert status["device-id"] == 2 and status["num-vqs"] >= 1
        assert guest.virtio_queue_status(blk, 0)["vring-num"] > 0
        guest.set_link(net, False)
        guest.block_resize(blk, 128 << 20)
        assert '"set_link"' in (tmp_path / "qmp.jsonl").read_text()


def test_killed_run_takes_its_qemu_with_it(tmp_path):
    # kill -9 gives the run no chance to clean up: the kernel's parent-death signal must.
    run_tag = uuid.uuid4().hex
    env = dict(os.environ, **{RUN_ENV: run_tag})
    proc = subprocess.Popen([CLI, "run", "--profile",
                             "virtio-rng", "--transport", "mmio", "--output",
                             str(tmp_path / "out")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not [c for _, c in survivors(run_tag) if "qemu-system" in c]:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    deadline = time.monotonic() + 10
    while survivors(run_tag) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert survivors(run_tag) == []
