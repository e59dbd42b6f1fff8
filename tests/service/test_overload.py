"""Abuse and overload against a real server: load shedding (503 + Retry-After), header and
body read timeouts (408), a bounded /metrics, and the per-request matrix budget."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from service.metrics import HTTP_METHODS
from tests.service.conftest import TEST_LIMITS, Server, serve

IN_FLIGHT = 2
READ_TIMEOUT_S = 2
QUEUED = 2
QUEUE_TIMEOUT_S = 5.0


@pytest.fixture(scope="module")
def small_server(bundled_graph_dir, tmp_path_factory) -> Iterator[Server]:
    with serve(bundled_graph_dir, tmp_path_factory.mktemp("overload") / "server.log",
               **TEST_LIMITS, NARETA_MAX_IN_FLIGHT=str(IN_FLIGHT),
               NARETA_HEADER_TIMEOUT_S=str(READ_TIMEOUT_S),
               NARETA_BODY_TIMEOUT_S=str(READ_TIMEOUT_S), NARETA_RETRY_AFTER_S="2",
               NARETA_MAX_QUEUED=str(QUEUED), NARETA_QUEUE_TIMEOUT_S=str(QUEUE_TIMEOUT_S),
               NARETA_MAX_MATRIX_CELLS="300", NARETA_ACCESS_LOG="false") as running:
        yield running


def _matrix_bodies(bundled_graph, count: int, size: int) -> list[dict]:
    """Matrices with distinct origins on roads (no cached run answers them)."""
    rng = np.random.default_rng(7)
    lon, lat = bundled_graph["path_lon"], bundled_graph["path_lat"]
    picks = rng.choice(len(lon), (count, size), replace=False if count * size < len(lon)
                       else True)
    return [{"origins": [{"lon": float(lon[i]), "lat": float(lat[i])} for i in row]}
            for row in picks]


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def _burst(base_url: str, bodies: list[dict]) -> list[httpx.Response]:
    """POST every body at once (a thread and a connection each, released together)."""
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response] = []

    def post(body):
        with httpx.Client(base_url=base_url, timeout=60) as http:
            http.get("/health")  # connected before the barrier
            barrier.wait()
            answers.append(http.post("/v1/matrix", json=body))

    threads = [threading.Thread(target=post, args=(body,)) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def test_overload_is_shed_with_retry_after(small_server, bundled_graph):
    """30 matrices at once on 2 slots and 2 places in the queue: the first 4 (and any that
    find a slot as they turn over) are answered, the rest get 503 at once."""
    bodies = _matrix_bodies(bundled_graph, 30, 20)
    for body in bodies:
        body["destinations"] = body["origins"][:15]  # 300 cells, the limit
    answers = _burst(small_server.base_url, bodies)
    statuses = sorted(answer.status_code for answer in answers)
    shed = [answer for answer in answers if answer.status_code == 503]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= IN_FLIGHT + QUEUED and shed, statuses
    for answer in shed:
        assert answer.headers["retry-after"] == "2"
        assert answer.json()["code"] == "Overloaded"
        # queue full: refused at once, not after the queue timeout
        assert answer.elapsed.total_seconds() < QUEUE_TIMEOUT_S
    metrics = httpx.get(f"{small_server.base_url}/metrics").text
    assert _metric(metrics, "nareta_http_shed_requests_total") >= len(shed)
    assert _metric(metrics, "nareta_matrix_cells_in_flight") == 0
    assert _metric(metrics, "nareta_http_in_flight_requests") == 0
    assert _metric(metrics, "nareta_http_queued_requests") == 0
    # probes are never shed, and the server answers normally once the burst is over
    assert httpx.get(f"{small_server.base_url}/ready").status_code == 200
    assert httpx.post(f"{small_server.base_url}/v1/matrix", json=bodies[0],
                      timeout=60).status_code == 200


def test_requests_within_slots_and_queue_all_answered(small_server, bundled_graph):
    answers = _burst(small_server.base_url,
                     _matrix_bodies(bundled_graph, IN_FLIGHT + QUEUED, 10))
    assert [answer.status_code for answer in answers] == [200] * (IN_FLIGHT + QUEUED)


def _connect(base_url: str) -> socket.socket:
    address = urlsplit(base_url)
    return socket.create_connection((address.hostname, address.port), timeout=30)


def _trickle(sock: socket.socket, data: bytes, *, seconds: float) -> float:
    """Send ``data`` a byte a second until the server answers or closes; the time taken."""
    started = time.monotonic()
    sock.settimeout(1.0)
    for byte in data:
        try:
            sock.sendall(bytes([byte]))
        except OSError:  # the server closed the connection
            break
        try:
            if sock.recv(1, socket.MSG_PEEK):
                break
        except TimeoutError:
            pass
        if time.monotonic() - started > seconds:
            break
    return time.monotonic() - started


def _read_all(sock: socket.socket) -> bytes:
    sock.settimeout(10)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_slow_body_is_cut_off(small_server):
    body = b'{"origin": {"lon": -76.61, "lat": 39.29}, "destination": {"lon": -76.55, "lat": 39.3}}'
    with _connect(small_server.base_url) as sock:
        sock.sendall(b"POST /v1/eta HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n"
                     b"content-length: " + str(len(body)).encode() + b"\r\n\r\n")
        took = _trickle(sock, body, seconds=30)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"RequestTimeout" in answer
    assert took < READ_TIMEOUT_S + 5  # cut off, not held for the whole body (~90 s)
    metrics = httpx.get(f"{small_server.base_url}/metrics").text
    assert _metric(metrics, "nareta_http_body_timeouts_total") >= 1


def test_slow_head_is_cut_off(small_server):
    with _connect(small_server.base_url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n")
        took = _trickle(sock, b"x-slow: " + b"a" * 100 + b"\r\n\r\n", seconds=30)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert took < READ_TIMEOUT_S + 5
    # an idle connection that never sends a byte is closed too
    with _connect(small_server.base_url) as sock:
        started = time.monotonic()
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408")
        assert time.monotonic() - started < READ_TIMEOUT_S + 5


def test_invented_methods_and_paths_do_not_grow_metrics(small_server):
    def series(text: str) -> set[str]:
        return {line.rsplit(" ", 1)[0] for line in text.splitlines()
                if line.startswith("nareta_http_requests_total{")}

    with httpx.Client(base_url=small_server.base_url, timeout=30) as http:
        before = series(http.get("/metrics").text)
        for i in range(150):
            http.request(f"INVENTED{i}", "/v1/eta")
            http.request(f"X{i}", f"/nowhere/{i}")
            http.get(f"/made/up/{i}")
        after = http.get("/metrics")
    added = series(after.text) - before
    assert len(added) <= 6, added  # e.g. OTHER /v1/eta 405, OTHER unmatched 404, GET unmatched 404
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', line)) for line in series(after.text)]
    assert {label["method"] for label in labels} <= HTTP_METHODS | {"OTHER"}
    assert not any(label["route"].startswith(("/nowhere", "/made")) for label in labels)
    assert "INVENTED" not in after.text and len(after.content) < 200_000


def test_matrix_work_budget(small_server, bundled_graph):
    body = _matrix_bodies(bundled_graph, 1, 20)[0]  # 20 x 20 = 400 cells > 300
    answer = httpx.post(f"{small_server.base_url}/v1/matrix", json=body, timeout=60)
    assert answer.status_code == 413, answer.text
    assert answer.json()["code"] == "TooBig" and "300 cells" in answer.json()["message"]
    body["destinations"] = body["origins"][:15]  # 20 x 15 = 300: allowed
    assert httpx.post(f"{small_server.base_url}/v1/matrix", json=body,
                      timeout=60).status_code == 200


def test_matrix_work_in_flight_is_bounded():
    """Two threads asking for more cells than the budget holds: the second waits for the
    first, or is refused with 503 + Retry-After when the wait runs out."""
    from service.errors import ServiceError
    from service.limits import MatrixWorkBudget

    budget = MatrixWorkBudget(100, retry_after_s=3)
    inside, release = threading.Event(), threading.Event()

    def first():
        with budget.hold(80, timeout_s=1):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(10) and budget.used == 80
    with budget.hold(20, timeout_s=0):  # fits beside it
        assert budget.used == 100
    with pytest.raises(ServiceError) as refused:
        with budget.hold(30, timeout_s=0.2):
            pass
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "3"}
    threading.Timer(0.2, release.set).start()
    started = time.monotonic()
    with budget.hold(500, timeout_s=10):  # bigger than the budget: waits, then runs alone
        assert budget.used == 100 and time.monotonic() - started >= 0.15
    thread.join()
    assert budget.used == 0


def test_matrix_waits_for_work_then_503(bundled_graph_dir):
    """Over HTTP: while the process's matrix budget is taken, a matrix waits the queue
    timeout and gets 503 + Retry-After; once it is free, the same matrix is answered."""
    import uvicorn

    from service.app import create_app
    from service.config import Settings
    from tests.service.conftest import DOWNTOWN, EAST, free_port, point, wait_ready

    settings = Settings(graph_dir=bundled_graph_dir, max_matrix_work_cells=1000,
                        queue_timeout_s=0.3, retry_after_s=4, access_log=False)
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base_url = f"http://127.0.0.1:{port}"
    body = {"origins": [point(DOWNTOWN), point(EAST)]}
    try:
        wait_ready(base_url)
        with app.state.matrix_budget.hold(1000, timeout_s=0):  # all of it, elsewhere
            started = time.monotonic()
            refused = httpx.post(f"{base_url}/v1/matrix", json=body, timeout=30)
            assert time.monotonic() - started >= 0.25  # it waited before giving up
        assert refused.status_code == 503 and refused.headers["retry-after"] == "4"
        assert refused.json()["code"] == "Overloaded"
        assert httpx.post(f"{base_url}/v1/matrix", json=body, timeout=30).status_code == 200
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def test_route_burst_is_shed_too(small_server, bundled_graph):
    """The OSRM route runs on the event loop without awaiting; a burst of them must still
    take slots and queue places one by one (and so be shed), not run back to back with
    nothing shed while the rest wait unseen."""
    rng = np.random.default_rng(11)
    lon, lat = bundled_graph["path_lon"], bundled_graph["path_lat"]
    picks = rng.choice(len(lon), (40, 2), replace=False)
    paths = [f"/route/v1/driving/{lon[a]:.6f},{lat[a]:.6f};{lon[b]:.6f},{lat[b]:.6f}"
             "?overview=false" for a, b in picks]
    barrier = threading.Barrier(len(paths))
    answers: list[httpx.Response] = []

    def get(path):
        with httpx.Client(base_url=small_server.base_url, timeout=60) as http:
            http.get("/health")
            barrier.wait()
            answers.append(http.get(path))

    threads = [threading.Thread(target=get, args=(path,)) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = [answer.status_code for answer in answers]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= IN_FLIGHT + QUEUED, statuses
