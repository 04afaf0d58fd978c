"""InfluxDB 3, Keycloak and Docker probes against fake servers answering what ../shared/contracts/
documents (real HTTP servers on port 0; Docker over a Unix socket), including unhealthy and
unauthorized answers."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from probes.config import DockerProbeConfig, InfluxProbeConfig, KeycloakProbeConfig
from probes.docker import DockerProbe, cpu_percent, memory_used
from probes.influxdb import InfluxProbe
from probes.keycloak import KeycloakProbe
from probes.runner import ProbeRunner
from tests.probes.conftest import FakeHTTP, Request, Response

TOKEN = "apiv3_secret"
UNAUTH = Response(401, '{"error": "the request was not authenticated"}')  # no Content-Type (SRC http.rs)


def influx_server(fake: FakeHTTP, *, recent: int = 42, files: list[dict[str, Any]] | None = None) -> None:
    def authed(handler):  # type: ignore[no-untyped-def]
        def wrapped(req: Request) -> Response:
            if req.headers.get("authorization") != f"Bearer {TOKEN}":
                return UNAUTH
            return handler(req)

        return wrapped

    fake.route(
        "GET", "/health", authed(lambda r: Response(200, "OK", {"Content-Type": "text/plain; charset=utf-8"}))
    )
    fake.route(
        "GET",
        "/ping",
        authed(
            lambda r: Response(
                200,
                {
                    "product_name": "InfluxDB 3 Core",
                    "version": "3.8.0",
                    "revision": "83b589b883",
                    "process_id": "b756d9e0-cecd-4f72-b6d0-19e2d4f8cbb7",
                },
                {
                    "Content-Type": "application/json",
                    "X-Influxdb-Version": "3.8.0",
                    "X-Influxdb-Build": "Core",
                },
            )
        ),
    )

    def query(req: Request) -> Response:
        if req.arg("db") != "iotcloud":
            return Response(404, {"error": f"database not found: {req.arg('db')}"})
        q = req.arg("q") or ""
        if "system.parquet_files" in q:
            return Response(200, files or [], {"Content-Type": "application/json"})
        if q.startswith("SELECT COUNT(*) AS n FROM telemetry"):
            return Response(200, [{"n": recent}], {"Content-Type": "application/json"})
        return Response(400, {"error": "error while planning query"})

    fake.route("GET", "/api/v3/query_sql", authed(query))


async def test_influx_healthy_with_token_figures_from_the_api(fake_http: FakeHTTP) -> None:
    files = [
        {"table_name": "telemetry", "files": 300, "bytes": 1000},
        {"table_name": "cpu", "files": 12, "bytes": 50},
    ]
    influx_server(fake_http, recent=42, files=files)
    probe = InfluxProbe(InfluxProbeConfig(url=fake_http.url, token=TOKEN, file_limit=432))
    result = (await ProbeRunner([probe]).run_once())["influxdb"]
    assert result.status == "healthy", result.error
    assert result.metrics == {
        "file_count": 312,
        "file_limit": 432,
        "data_bytes": 1050,
        "recent_writes": 42,
        "file_count_max_table": 300,
    }
    assert result.details["version"] == "3.8.0" and result.details["build"] == "Core"
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in fake_http.requests)


async def test_influx_files_from_the_data_directory_near_the_limit(
    fake_http: FakeHTTP, tmp_path: Path
) -> None:
    influx_server(fake_http)
    # <node>/dbs/<db_id>/<table_id>/<date>/<HH-MM>/<seq>.parquet, plus WAL and catalog files
    for i in range(9):
        f = tmp_path / "node0" / "dbs" / "0" / "1" / "2026-11-27" / f"10-{i:02d}" / f"{i:010d}.parquet"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"p" * 5000)
    other = tmp_path / "node0" / "dbs" / "0" / "2" / "2026-11-27" / "10-00" / "0000000001.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"q")
    (tmp_path / "node0" / "wal").mkdir()
    (tmp_path / "node0" / "wal" / "00000000001.wal").write_bytes(b"w" * 100)
    cfg = InfluxProbeConfig(url=fake_http.url, token=TOKEN, data_dir=str(tmp_path), file_limit=10)
    result = (await ProbeRunner([InfluxProbe(cfg)]).run_once())["influxdb"]
    du = int(
        subprocess.run(
            ["du", "-s", "-B1", str(tmp_path)], capture_output=True, text=True, check=True
        ).stdout.split()[0]
    )
    assert result.metrics["file_count"] == 10 and result.metrics["file_count_max_table"] == 9
    assert result.metrics["data_bytes"] == du
    assert result.status == "degraded" and result.error is not None
    assert result.error.startswith("9 Parquet files in one table, near the query file limit 10")


@pytest.mark.parametrize("token", ["", "wrong"])
async def test_influx_unauthorized_is_down_with_the_reason(fake_http: FakeHTTP, token: str) -> None:
    influx_server(fake_http)
    runner = ProbeRunner([InfluxProbe(InfluxProbeConfig(url=fake_http.url, token=token))])
    assert (await runner.run_once())["influxdb"].status == "degraded"
    result = (await runner.run_once())["influxdb"]
    assert result.status == "down" and result.error is not None
    assert result.error.startswith("unauthorized: /health needs a valid token")
    assert ("no token configured" in result.error) == (token == "")
    assert "the request was not authenticated" in result.error


async def test_influx_unknown_database_degrades_with_reason(fake_http: FakeHTTP) -> None:
    influx_server(fake_http)
    cfg = InfluxProbeConfig(url=fake_http.url, token=TOKEN, database="nope")
    result = (await ProbeRunner([InfluxProbe(cfg)]).run_once())["influxdb"]
    assert result.status == "degraded" and result.metrics["recent_writes"] is None
    assert result.error is not None and "recent writes: HTTP 404: database not found: nope" in result.error


# --- Keycloak ---------------------------------------------------------------------------------

UP = {
    "status": "UP",
    "checks": [{"name": "Keycloak database connections async health check", "status": "UP"}],
}
DOWN = {
    "status": "DOWN",
    "checks": [
        {
            "name": "Keycloak database connections async health check",
            "status": "DOWN",
            "data": {"Failing since": "2025-01-01 12:00:00,000"},
        }
    ],
}


def keycloak_server(
    fake: FakeHTTP, *, health: Response | None = None, admin_status: int = 200
) -> dict[str, int]:
    calls = {"token": 0}
    fake.route("GET", "/health/ready", health or Response(200, UP, {"Content-Type": "application/json"}))

    def token(req: Request) -> Response:
        calls["token"] += 1
        form = dict(p.split("=", 1) for p in req.body.decode().split("&"))
        if form.get("client_secret") != "s3cret" or form.get("grant_type") != "client_credentials":
            return Response(
                401, {"error": "unauthorized_client", "error_description": "Invalid client secret"}
            )
        return Response(
            200, {"access_token": f"tok{calls['token']}", "expires_in": 300, "token_type": "Bearer"}
        )

    def stats(req: Request) -> Response:
        if not req.headers.get("authorization", "").startswith("Bearer tok"):
            return Response(401, {"error": "HTTP 401 Unauthorized"})
        if admin_status != 200:
            return Response(admin_status, {"error": "HTTP 403 Forbidden"})
        return Response(
            200,
            [
                {"id": "u1", "clientId": "web", "active": "3", "offline": "0"},
                {"id": "u2", "clientId": "mobile", "active": "11", "offline": "4"},
            ],
        )

    fake.route("POST", "/realms/iot/protocol/openid-connect/token", token)
    fake.route("GET", "/admin/realms/iot/client-session-stats", stats)
    return calls


def kc(fake: FakeHTTP, secret: str | None = "s3cret") -> KeycloakProbe:
    creds = {"client_id": "opsdash-probe", "client_secret": secret, "url": fake.url} if secret else {}
    return KeycloakProbe(KeycloakProbeConfig(management_url=fake.url, realm="iot", **creds))  # type: ignore[arg-type]


async def test_keycloak_health_only_without_credentials(fake_http: FakeHTTP) -> None:
    keycloak_server(fake_http)
    result = (await ProbeRunner([kc(fake_http, None)]).run_once())["keycloak"]
    assert result.status == "healthy"
    assert result.metrics == {"active_sessions": None, "offline_sessions": None}
    assert [r.path for r in fake_http.requests] == ["/health/ready"]


async def test_keycloak_sessions_summed_from_strings_and_token_cached(fake_http: FakeHTTP) -> None:
    calls = keycloak_server(fake_http)
    runner = ProbeRunner([kc(fake_http)])
    first = (await runner.run_once())["keycloak"]
    second = (await runner.run_once())["keycloak"]
    assert first.status == second.status == "healthy"
    assert second.metrics == {"active_sessions": 14, "offline_sessions": 4, "clients_with_sessions": 2}
    assert calls["token"] == 1


async def test_keycloak_not_ready_is_down_naming_the_failing_check(fake_http: FakeHTTP) -> None:
    keycloak_server(fake_http, health=Response(503, DOWN, {"Content-Type": "application/json"}))
    runner = ProbeRunner([kc(fake_http, None)])
    await runner.run_once()
    result = (await runner.run_once())["keycloak"]
    assert result.status == "down" and result.error == (
        "not ready (HTTP 503, status DOWN): Keycloak database connections async health check: DOWN "
        "(Failing since 2025-01-01 12:00:00,000)"
    )


async def test_keycloak_health_disabled_404(fake_http: FakeHTTP) -> None:
    keycloak_server(fake_http, health=Response(404, ""))
    runner = ProbeRunner([kc(fake_http, None)])
    await runner.run_once()
    result = (await runner.run_once())["keycloak"]
    assert result.status == "down" and result.error is not None and "--health-enabled=true" in result.error


async def test_keycloak_bad_secret_and_missing_role_degrade_keeping_health(fake_http: FakeHTTP) -> None:
    keycloak_server(fake_http)
    result = (await ProbeRunner([kc(fake_http, "wrong")]).run_once())["keycloak"]
    assert result.status == "degraded" and result.metrics["active_sessions"] is None
    assert result.error == "sessions: token request refused (HTTP 401): Invalid client secret"
    fake_http.routes.clear()
    keycloak_server(fake_http, admin_status=403)
    result = (await ProbeRunner([kc(fake_http)]).run_once())["keycloak"]
    assert result.status == "degraded" and result.error is not None and "view-realm" in result.error


# --- Docker -------------------------------------------------------------------------------------


def _stats(total: int, system: int, usage: int, *, v1: bool = False) -> dict[str, Any]:
    mem_stats = {"total_inactive_file": 1000, "cache": 5000} if v1 else {"inactive_file": 2000, "anon": 1}
    return {
        "read": "2026-11-27T10:00:00Z",
        "cpu_stats": {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system, "online_cpus": 4},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "system_cpu_usage": 0},
        "memory_stats": {"usage": usage, "limit": 100_000, "stats": mem_stats},
    }


CONTAINERS = [
    {
        "Id": "aaa",
        "Names": ["/iot-ingest-1"],
        "State": "running",
        "Status": "Up 4 days",
        "Labels": {"com.docker.compose.project": "iot", "com.docker.compose.service": "ingest"},
    },
    {
        "Id": "bbb",
        "Names": ["/iot-postgres-1"],
        "State": "running",
        "Status": "Up 4 days (unhealthy)",
        "Labels": {"com.docker.compose.project": "iot", "com.docker.compose.service": "postgres"},
    },
    {
        "Id": "ccc",
        "Names": ["/iot-seed-run-1"],
        "State": "exited",
        "Status": "Exit 0",
        "Labels": {"com.docker.compose.service": "seed", "com.docker.compose.oneoff": "True"},
    },
    {"Id": "ddd", "Names": ["/boring_feynman"], "State": "exited", "Status": "Exit 0", "Labels": {}},
]


@pytest.fixture
async def docker_socket(tmp_path: Path):  # type: ignore[no-untyped-def]
    fake = FakeHTTP()
    path = str(tmp_path / "docker.sock")
    samples = {
        "aaa": [_stats(1_000, 100_000, 50_000), _stats(3_000, 120_000, 50_000)],
        "bbb": [_stats(0, 100_000, 95_000, v1=True), _stats(0, 120_000, 95_000, v1=True)],
    }
    served: dict[str, int] = {"aaa": 0, "bbb": 0}
    fake.route(
        "GET", "/v1.43/containers/json", Response(200, CONTAINERS, {"Content-Type": "application/json"})
    )
    for cid in samples:

        def stats(req: Request, cid: str = cid) -> Response:
            assert req.arg("stream") == "false" and req.arg("one-shot") == "true"
            i = min(served[cid], 1)
            served[cid] += 1
            return Response(200, samples[cid][i], {"Content-Type": "application/json"})

        fake.route("GET", f"/v1.43/containers/{cid}/stats", stats)
    await fake.start_unix(path)
    yield path, fake
    await fake.close()


async def test_docker_containers_cpu_and_memory_like_docker_stats(
    docker_socket: tuple[str, FakeHTTP],
) -> None:
    path, fake = docker_socket
    probe = DockerProbe(DockerProbeConfig(socket=path, cpu_sample_s=0.05))
    result = (await ProbeRunner([probe]).run_once())["docker"]
    assert result.metrics["containers_running"] == 2 and result.metrics["containers_total"] == 3
    rows = {r["name"]: r for r in result.details["containers"]}
    assert set(rows) == {"iot-ingest-1", "iot-postgres-1", "boring_feynman"}  # the one-off is left out
    # CPU: (3000-1000)/(120000-100000) * 4 cpus * 100 = 40 %; memory v2: usage - inactive_file
    assert rows["iot-ingest-1"] == {
        "name": "iot-ingest-1",
        "service": "ingest",
        "state": "running",
        "status": "Up 4 days",
        "cpu_pct": 40.0,
        "mem_bytes": 48_000,
        "mem_limit_bytes": 100_000,
    }
    # cgroup v1: usage - total_inactive_file (the CLI's rule, not the API doc's "cache")
    assert rows["iot-postgres-1"]["mem_bytes"] == 94_000 and rows["iot-postgres-1"]["cpu_pct"] == 0.0
    assert rows["boring_feynman"]["cpu_pct"] is None and rows["boring_feynman"]["state"] == "exited"
    assert result.status == "degraded" and result.error is not None
    assert (
        "iot-postgres-1 unhealthy" in result.error
        and "iot-postgres-1 memory 94% of its limit" in result.error
    )
    assert all(r.path.startswith("/v1.43/") for r in fake.requests)


async def test_no_docker_socket_is_unknown_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    probe = DockerProbe(DockerProbeConfig(socket=str(tmp_path / "none.sock")))
    runner = ProbeRunner([probe])
    with caplog.at_level(logging.INFO, logger="opsdash.probes"):
        results = [(await runner.run_once())["docker"] for _ in range(4)]
    assert {(r.status, r.error) for r in results} == {("unknown", "unavailable: no docker socket")}
    assert [r.getMessage() for r in caplog.records] == ["probe docker: unavailable: no docker socket"]


async def test_dead_daemon_behind_an_existing_socket_is_a_failure(tmp_path: Path) -> None:
    path = tmp_path / "stale.sock"
    import socket

    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()  # the file stays, nobody listens
    assert os.path.exists(path)
    runner = ProbeRunner([DockerProbe(DockerProbeConfig(socket=str(path)))])
    await runner.run_once()
    result = (await runner.run_once())["docker"]
    assert result.status == "down" and result.error is not None
    assert result.error.startswith(f"docker daemon not answering on {path}")


def test_docker_formulas_match_the_cli() -> None:
    # MOBY v1.43 example: precpu/cpu as documented
    cur = {
        "cpu_usage": {"total_usage": 100215355, "percpu_usage": [1, 2, 3, 4]},
        "system_cpu_usage": 739306590000000,
        "online_cpus": 4,
    }
    pre = {"cpu_usage": {"total_usage": 100093996}, "system_cpu_usage": 9492140000000}
    expected = (100215355 - 100093996) / (739306590000000 - 9492140000000) * 4 * 100
    assert cpu_percent(pre, cur) == pytest.approx(expected)
    assert cpu_percent(cur, cur) == 0.0
    assert memory_used({"usage": 6537216, "stats": {"total_inactive_file": 0, "cache": 0}}) == 6537216
    assert memory_used({"usage": 10, "stats": {"inactive_file": 20}}) == 10
