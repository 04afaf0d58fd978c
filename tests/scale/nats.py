"""A private NATS server or cluster (nats-server with JetStream and its MQTT listener) for the tests.

Every node gets free ports for clients, routes, HTTP monitoring and MQTT, and its own JetStream
directory, so a test can kill -9 a node and start it again on the same ports (design.md section 12).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.servers import free_port, scaled, wait_port


class NatsCluster:
    """``n`` nats-server nodes; one node runs without a cluster block."""

    def __init__(self, workdir: Path, n: int = 3) -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server not found: run ./run test, which installs it")
        self.binary = binary
        self.workdir = workdir
        self.n = n
        self.ports = [{k: free_port() for k in ("client", "route", "http", "mqtt")} for _ in range(n)]
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * n

    def mqtt_url(self, i: int) -> str:
        return f"mqtt://127.0.0.1:{self.ports[i]['mqtt']}"

    @property
    def mqtt_urls(self) -> str:
        """All nodes, comma-separated, as OPSDASH_MQTT_URL takes them."""
        return ",".join(self.mqtt_url(i) for i in range(self.n))

    def monitor_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.ports[i]['http']}"

    def _conf(self, i: int) -> Path:
        p = self.ports[i]
        routes = ", ".join(f"nats://127.0.0.1:{q['route']}" for q in self.ports)
        lines = [
            f"server_name: n{i}",
            f"listen: 127.0.0.1:{p['client']}",
            f"http: 127.0.0.1:{p['http']}",
            f"jetstream {{ store_dir: {self.workdir / f'js{i}'} }}",
            # 3 replicas of the MQTT streams (the default keeps only 2, see docs/scale.md)
            f"mqtt {{ listen: 127.0.0.1:{p['mqtt']}, stream_replicas: {min(self.n, 3)} }}",
        ]
        if self.n > 1:
            lines.append(f"cluster {{ name: opsdash, listen: 127.0.0.1:{p['route']}, routes: [{routes}] }}")
        path = self.workdir / f"n{i}.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, i: int | None = None, timeout: float = 60.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for k in range(self.n) if i is None else (i,):
            log = (self.workdir / f"n{k}.log").open("ab")
            self.procs[k] = subprocess.Popen([self.binary, "-c", str(self._conf(k))], stdout=log, stderr=log)
        for k in range(self.n) if i is None else (i,):
            wait_port("127.0.0.1", self.ports[k]["mqtt"], timeout=timeout)
        # JetStream elects its leaders in ~7 s on an idle machine; far longer on a loaded one
        deadline = time.monotonic() + scaled(timeout)
        for k in range(self.n) if i is None else (i,):
            # The MQTT listener accepts TCP at once but answers CONNECT only once JetStream has a meta
            # leader and the MQTT streams exist: wait for a real CONNACK.
            while not self.mqtt_ready(k):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"NATS node {k} answers no MQTT CONNECT after {timeout} s:\n"
                                       + self.log(k)[-2000:])
                time.sleep(0.2)

    def healthz(self, k: int) -> dict[str, object]:
        try:
            with urllib.request.urlopen(self.monitor_url(k) + "/healthz", timeout=2) as resp:
                body: dict[str, object] = json.loads(resp.read())
                return body
        except (OSError, ValueError) as exc:
            return {"status": "error", "error": str(exc)}

    def mqtt_ready(self, k: int) -> bool:
        """True when node ``k`` answers an MQTT CONNECT (clean session) with CONNACK 0."""
        connect = bytes([0x10, 17, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 10, 0, 5]) + b"ready"
        try:
            with socket.create_connection(("127.0.0.1", self.ports[k]["mqtt"]), timeout=2) as s:
                s.settimeout(2)
                s.sendall(connect)
                ack = s.recv(4)
                s.sendall(bytes([0xE0, 0]))  # DISCONNECT
                return ack[:1] == b"\x20" and ack[3:4] == b"\x00"
        except OSError:
            return False

    def kill(self, i: int) -> None:
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.procs[i] = None

    def stop(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
                if proc.poll() is None:
                    proc.kill()
                self.procs[i] = None

    def log(self, i: int) -> str:
        return (self.workdir / f"n{i}.log").read_text(errors="replace")
