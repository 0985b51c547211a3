"""A real OpenSSH server on 127.0.0.1 for the tests of ssh:// Docker hosts, owned by the session.

Debian's openssh-server is unpacked from the host's mirror into the session's temp dir (as mrctl
fetches redis-server: no apt, nothing installed), and runs with its own host key, its own
authorized key and no password logins. The client is the machine's own `ssh` (else the one
unpacked with the server), reached through a PATH entry whose `ssh` adds `-F <the session's
ssh_config>` (key, port, known-hosts file), so that neither the user's ~/.ssh nor the system's
configuration is read or changed. docker-py runs
`ssh ... docker system dial-stdio`, which reaches this machine's engine through the docker CLI:
the engine is the same, but everything between is the real ssh path.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from served import free_port, stop, unpack_from_mirror

PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; made here only if it is missing


class SshServer:
    """sshd on 127.0.0.1:<free port>; `url` is the ssh:// Docker host URL, `path` the PATH to
    run docker-py's ssh client with."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        sshd, libs = _fetch_sshd(root / "pkg")
        # the machine's own client, else the one unpacked with the server (its dependency)
        ssh, keygen = (shutil.which(t) or str(root / "pkg" / "usr" / "bin" / t) for t in ("ssh", "ssh-keygen"))
        self.port = free_port()
        key = root / "client_key"
        for path in (root / "host_key", key):
            subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
        shutil.copy(key.with_suffix(".pub"), root / "authorized_keys")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\n")
        (root / "ssh_config").write_text(
            f"Host 127.0.0.1\n  Port {self.port}\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {root / 'known_hosts'}\n  StrictHostKeyChecking accept-new\n"
            "  BatchMode yes\n  LogLevel ERROR\n")
        shim = root / "bin"
        shim.mkdir()
        (shim / "ssh").write_text(f'#!/bin/sh\nexec {ssh} -F {root / "ssh_config"} "$@"\n')
        (shim / "ssh").chmod(0o755)
        self.path = f"{shim}{os.pathsep}{os.environ.get('PATH', '')}"
        self.url = f"ssh://{getpass.getuser()}@127.0.0.1:{self.port}"
        self._made_privsep = not PRIVSEP_DIR.exists()
        if self._made_privsep:
            PRIVSEP_DIR.mkdir(mode=0o755)
        command = [sshd, "-D", "-e", "-f", str(root / "sshd_config")]
        if os.geteuid() == 0:  # root's sshd drops privileges to the user "sshd", which this
            # machine need not have: it is added to a copy of /etc/passwd that only this sshd
            # sees (bound over the file in a mount namespace of its own)
            passwd = root / "passwd"
            passwd.write_text(Path("/etc/passwd").read_text() + "sshd:x:65534:65534::/run/sshd:/usr/sbin/nologin\n")
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       'mount --bind "$0" /etc/passwd && exec "$@"', str(passwd), *command]
        self._log = (root / "sshd.log").open("wb")
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "LD_LIBRARY_PATH": libs})
        try:
            self._wait_listening()
        except BaseException:  # a server that never listened leaves nothing behind either
            self.close()
            raise

    def _wait_listening(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not listen on port {self.port}: {self.log()}") from None
                time.sleep(0.1)

    def log(self) -> str:
        return (self.root / "sshd.log").read_text(errors="replace")[-3000:]

    def logins(self) -> int:
        """How many logins the server has accepted (the whole log, not its tail)."""
        return (self.root / "sshd.log").read_text(errors="replace").count("Accepted publickey")

    def close(self) -> None:
        stop(self.proc)
        self._log.close()
        if self._made_privsep:
            shutil.rmtree(PRIVSEP_DIR, ignore_errors=True)


def _fetch_sshd(target: Path) -> tuple[str, str]:
    """(the sshd executable, its LD_LIBRARY_PATH), unpacked from the host's Debian mirror with
    the libraries this machine lacks."""
    unpack_from_mirror(["openssh-server"], target)
    libs = [str(d) for d in (target / "usr" / "lib").glob("*-linux-gnu*") if d.is_dir()]
    libs += [str(target / "lib" / d.name) for d in (target / "lib").glob("*-linux-gnu*") if d.is_dir()]
    return str(target / "usr" / "sbin" / "sshd"), os.pathsep.join(libs)

