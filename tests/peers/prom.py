"""A private Prometheus (Debian's ``prometheus`` package; ``./run test`` installs it) on a free port."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, scaled, wait_port


class Prometheus:
    def __init__(self, workdir: Path, config: str) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus missing: ./run test installs Debian's prometheus package"
        self.binary = binary
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(config)
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Prometheus:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [self.binary, f"--config.file={self.config_path}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--web.enable-lifecycle",
             "--storage.tsdb.retention.time=1h"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            wait_port("127.0.0.1", self.port, timeout=scaled(20))
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"prometheus did not start: {self.log()[-3000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.base}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; raises (HTTP 400) on a bad expression."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]  # type: ignore[no-any-return]

    def wait(self, what: str, predicate: Any, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + scaled(timeout)
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
            except (OSError, AssertionError) as exc:
                last = exc
            else:
                if last:
                    return last
            time.sleep(0.25)
        raise AssertionError(f"{what}: not after {timeout} s (last {last!r}); "
                             f"prometheus log:\n{self.log()[-2000:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
