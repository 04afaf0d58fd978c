"""A real Alertmanager (Debian's prometheus-alertmanager) on free ports, for the tests and the bench."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port, scaled

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or \
    "/usr/bin/prometheus-alertmanager"


class Alertmanager:
    """Routes everything to ``webhook_url`` at once (group_wait 0 s), no clustering."""

    def __init__(self, workdir: Path, webhook_url: str) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.webhook_url = webhook_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Alertmanager:
        conf = self.workdir / "alertmanager.yml"
        conf.write_text(
            "route:\n  receiver: hook\n  group_by: ['alertname', 'component']\n"
            "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            f"receivers:\n  - name: hook\n    webhook_configs:\n      - url: '{self.webhook_url}'\n"
            "        send_resolved: true\n")
        log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [BINARY, f"--config.file={conf}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        deadline = time.monotonic() + scaled(15)
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"alertmanager did not start: {self.log_path.read_text()[-2000:]}")

    def alerts(self) -> list[dict]:
        return httpx.get(f"{self.url}/api/v2/alerts", timeout=5).json()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
