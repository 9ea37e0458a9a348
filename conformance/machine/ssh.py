"""One persistent SSH connection per guest (paramiko), opened with retries.

dropbear in the guest has no scp/sftp server, so files travel over an exec channel's
stdin (``cat > path``).
"""

from __future__ import annotations

import base64
import io
import shlex
import time
from dataclasses import dataclass

import paramiko

from ..errors import GuestCommandError
from .deadline import Deadline


@dataclass
class CommandResult:
    command: str
    exitcode: int
    stdout: str
    stderr: str
    duration: float


def new_keypair() -> tuple[paramiko.Ed25519Key, str]:
    """A fresh key for this run: (private key, ``type:base64`` for the kernel command line)."""
    # paramiko cannot generate ed25519 keys itself; cryptography (its dependency) can.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption())
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem.decode()))
    return key, f"{key.get_name()}:{key.get_base64()}"


class GuestShell:
    def __init__(self, host: str, port: int, key: paramiko.PKey, user: str = "root",
                 host_key: str | None = None):
        self.host = host
        self.port = port
        self.key = key
        self.user = user
        self.host_key = host_key  # "ssh-ed25519 AAAA...", as the guest printed it on serial
        self._client: paramiko.SSHClient | None = None

    def connect(self, deadline: Deadline, abort=None) -> None:
        last: Exception | None = None
        while not deadline.expired():
            if abort is not None:
                reason = abort()
                if reason:
                    raise GuestCommandError(f"SSH connect abandoned: {reason}")
            client = paramiko.SSHClient()
            if self.host_key:
                # The guest made its host key at boot and printed it on the serial
                # console, a channel only we hold: pin it, so SSH reaches that guest.
                kind, blob = self.host_key.split()[:2]
                name = f"[{self.host}]:{self.port}"
                client.get_host_keys().add(name, kind, paramiko.PKey.from_type_string(
                    kind, base64.b64decode(blob)))
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
            else:
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            try:
                client.connect(self.host, self.port, username=self.user, pkey=self.key,
                               timeout=min(5.0, max(0.5, deadline.remaining())),
                               banner_timeout=min(5.0, max(0.5, deadline.remaining())),
                               auth_timeout=5.0, allow_agent=False, look_for_keys=False)
                transport = client.get_transport()
                assert transport is not None
                transport.set_keepalive(5)
                self._client = client
                return
            except (paramiko.SSHException, OSError, EOFError) as e:
                last = e
                client.close()
                time.sleep(0.05)
        raise GuestCommandError(f"SSH to {self.host}:{self.port} not ready: {last!r}")

    @property
    def connected(self) -> bool:
        t = self._client.get_transport() if self._client else None
        return bool(t and t.is_active())

    def run(self, command: str, *, input: bytes | None = None, timeout: float = 60.0,
            check: bool = False) -> CommandResult:
        """Run ``command`` in the guest; raise ``GuestCommandError`` if SSH fails.

        With ``check`` a non-zero exit also raises (a probe that crashed is a harness
        problem, not a finding).
        """
        if self._client is None:
            raise GuestCommandError("SSH is not connected", command=command)
        start = time.monotonic()
        try:
            stdin, stdout, stderr = self._client.exec_command(command, timeout=timeout)
            channel = stdout.channel
            if input is not None:
                stdin.write(input)
                stdin.flush()
            channel.shutdown_write()
            out = stdout.read()
            err = stderr.read()
            code = channel.recv_exit_status()
        except (TimeoutError, paramiko.SSHException, OSError, EOFError) as e:
            raise GuestCommandError(f"SSH command failed ({e!r}): {command}",
                                    command=command, transient=True) from e
        result = CommandResult(command, code, out.decode("utf-8", "replace"),
                               err.decode("utf-8", "replace"), time.monotonic() - start)
        if check and code != 0:
            raise GuestCommandError(
                f"guest command exited {code}: {command}\n{result.stderr[-2000:]}",
                command=command, exitcode=code, stdout=result.stdout, stderr=result.stderr)
        return result

    def push(self, path: str, data: bytes, mode: int = 0o644) -> None:
        q = shlex.quote(path)
        self.run(f"mkdir -p $(dirname {q}) && cat > {q} && chmod {mode:o} {q}",
                 input=data, check=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
