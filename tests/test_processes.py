"""Child processes die with their group, and survivors are found by the run tag."""

import os
import time
import uuid

from conformance.machine.processes import RUN_ENV, ChildProcess, reap_survivors, survivors


def test_kill_takes_the_whole_group(tmp_path):
    # A daemon that forks a grandchild: killing the leader alone would leave it.
    child = ChildProcess(["sh", "-c", "sleep 300 & echo $! > grandchild; wait"],
                         name="forker", log_path=tmp_path / "log", cwd=tmp_path)
    for _ in range(100):
        if (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text().strip():
            break
        time.sleep(0.02)
    grandchild = int((tmp_path / "grandchild").read_text())
    child.kill()
    time.sleep(0.1)
    assert not _running(grandchild)


def test_children_carry_the_run_tag_and_are_reaped(tmp_path):
    # A tag of this test's own: other tests (and xdist workers) reap their run's tag.
    tag = uuid.uuid4().hex
    env = dict(os.environ, **{RUN_ENV: tag})
    child = ChildProcess(["sleep", "300"], name="s", log_path=tmp_path / "log", env=env)
    assert any(pid == child.pid for pid, _ in survivors(tag))
    killed = reap_survivors(tag, wait=0)
    assert any(pid == child.pid for pid, _ in killed)
    child.wait(5)
    assert not child.alive


def test_output_tail_is_kept(tmp_path):
    child = ChildProcess(["sh", "-c", "echo hello; echo oops >&2"], name="e",
                         log_path=tmp_path / "log")
    child.wait(5)
    assert "hello" in child.output() and "oops" in child.output()
    child.kill()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False
