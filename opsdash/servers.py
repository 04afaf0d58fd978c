"""Private servers started from the machine's binaries: mosquitto and PostgreSQL in a directory of ours.

Used by ``opsdash demo`` (when no broker or database is configured) and by the test suite
(``tests/support/servers.py`` re-exports everything here).

For the tests: a private mosquitto per test, a private database per test.

Each test gets its own mosquitto on a free port (so it can kill and restart it) started with the
project's ``deploy/mosquitto.conf`` settings, and its own PostgreSQL database on the machine's server
(127.0.0.1:5432). Where no server listens there (a fresh machine), one private PostgreSQL cluster is
started from the machine's binaries for the whole session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_CONF = ROOT / "deploy" / "mosquitto.conf"
FACTOR = float(os.environ.get("OPSDASH_TIMEOUT_FACTOR", "1"))


def scaled(seconds: float) -> float:
    """A timeout scaled by OPSDASH_TIMEOUT_FACTOR (set it above 1 on a slow machine)."""
    return seconds * FACTOR


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s") from None
            time.sleep(0.02)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies (even by kill -9).

    So a private server of a demo that was killed outright does not outlive it. None elsewhere.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)

    return _set


def _find_binary(name: str, *extra: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for cand in extra:
        if os.path.exists(cand):
            return cand
    raise RuntimeError(f"{name} not found: run ./run test, which installs it")


class Mosquitto:
    """A private mosquitto on a free port, configured like deploy/mosquitto.conf."""

    def __init__(self, workdir: Path, extra_conf: str = "", port: int | None = None,
                 base_conf: Path | None = DEPLOY_CONF, die_with_parent: bool = False) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.extra_conf = extra_conf
        self.base_conf = base_conf if base_conf is None or base_conf.exists() else None
        self.die_with_parent = die_with_parent
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = _find_binary("mosquitto", "/usr/sbin/mosquitto")
        self.log_path = workdir / "mosquitto.log"

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def _conf(self) -> Path:
        lines: list[str] = []
        if self.base_conf is not None:
            for line in self.base_conf.read_text().splitlines():
                if re.match(r"\s*(listener|persistence_location|log_dest|allow_anonymous)\b", line):
                    continue
                lines.append(line)
        lines += [
            f"listener {self.port} {self.host}",
            f"persistence_location {self.workdir}/",
            "log_dest stderr",
            self.extra_conf,
        ]
        if "allow_anonymous" not in self.extra_conf:
            lines.append("allow_anonymous true")
        path = self.workdir / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self) -> Mosquitto:
        conf = self._conf()
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log,
                                     start_new_session=True,
                                     # prctl is one syscall: safe between fork and exec
                                     preexec_fn=_die_with_parent() if self.die_with_parent else None)  # noqa: PLW1509
        log.close()
        try:
            wait_port(self.host, self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log_path.read_text()[-2000:]}") from None
        return self

    def kill(self) -> None:
        """kill -9: no clean shutdown, no Last Will of its own clients sent."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()


def _pg_bin(name: str) -> str:
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return _find_binary(name)


class PrivatePostgres:
    """A PostgreSQL cluster in a temporary directory, on a free port (trust auth)."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.datadir = workdir / "data"
        self._run_as: list[str] = []

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PrivatePostgres:
        self.workdir.mkdir(parents=True, exist_ok=True)
        run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run it as the postgres user
            shutil.chown(self.workdir, "postgres")
            run_as = ["runuser", "-u", "postgres", "--"]
        if not self.datadir.exists():
            subprocess.run([*run_as, _pg_bin("initdb"), "-D", str(self.datadir), "-U", "postgres",
                            "--auth=trust", "-E", "UTF8", "--no-sync"], check=True,
                           capture_output=True)
        subprocess.run([*run_as, _pg_bin("pg_ctl"), "-D", str(self.datadir), "-w", "-l",
                        str(self.workdir / "pg.log"), "-o",
                        f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off",
                        "start"], check=True, capture_output=True)
        self._run_as = run_as
        return self

    def stop(self) -> None:
        """Fast shutdown; if pg_ctl cannot do it, SIGQUIT then SIGKILL the postmaster."""
        if not (self.datadir / "postmaster.pid").exists():
            return
        try:
            subprocess.run([*self._run_as, _pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast",
                            "-w", "-t", "20", "stop"], check=True, capture_output=True)
        except (subprocess.CalledProcessError, OSError):
            self._signal_postmaster(signal.SIGQUIT)
            time.sleep(1)
            self._signal_postmaster(signal.SIGKILL)

    def _signal_postmaster(self, sig: int) -> None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, sig)


def local_postgres_up(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False
