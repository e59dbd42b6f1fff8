"""Prometheus metrics, one registry per app (no process-wide globals).

Every label comes from a closed set, so no client can grow ``/metrics``: an HTTP method
outside :data:`HTTP_METHODS` is counted as ``OTHER``, a path no route matches as
``unmatched`` (5,000 requests with invented methods had grown it from 0.38 MB to 9.4 MB)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _PredictorCollector:
    """Reads the Predictor's counters at scrape time."""

    def __init__(self, app_state):
        self.app_state = app_state

    def collect(self):
        predictor = getattr(self.app_state, "predictor", None)
        stats = predictor.stats if predictor is not None else {}
        for name, help_text in (("runs", "model runs (one per origin node and time bucket)"),
                                ("cache_hits", "queries answered from cached model runs"),
                                ("run_seconds", "seconds spent in model runs"),
                                ("targeted_runs", "runs that stopped once the query's "
                                                  "destinations were settled"),
                                ("widened_runs", "whole-graph runs for a root whose earlier "
                                                 "run stopped short of a new query")):
            family = CounterMetricFamily(f"nareta_model_{name}", help_text)
            family.add_metric([], float(stats.get(name, 0)))
            yield family
        cached = GaugeMetricFamily("nareta_model_cache_bytes", "bytes held by the run LRU")
        cached.add_metric([], float(getattr(predictor, "_cached_bytes", 0)))
        yield cached
        budget = getattr(self.app_state, "matrix_budget", None)
        cells = GaugeMetricFamily("nareta_matrix_cells_in_flight",
                                  "matrix cells being computed (NARETA_MAX_MATRIX_WORK_CELLS)")
        cells.add_metric([], float(budget.used if budget is not None else 0))
        yield cells


class Metrics:
    def __init__(self, app_state):
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("nareta_http_requests", "HTTP requests",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("nareta_http_request_duration_seconds",
                                 "HTTP request latency", ["method", "route"],
                                 buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.model_info = Gauge("nareta_model_info", "the loaded model (value 1)",
                                ["model", "model_identity", "graph_identity"],
                                registry=self.registry)
        self.ready = Gauge("nareta_ready", "1 when the predictor is loaded",
                           registry=self.registry)
        self.in_flight = Gauge("nareta_http_in_flight_requests",
                               "requests being worked on (the load-shedding count)",
                               registry=self.registry)
        self.queued = Gauge("nareta_http_queued_requests",
                            "requests waiting for an in-flight slot", registry=self.registry)
        self.shed = Counter("nareta_http_shed_requests",
                            "requests answered 503 Overloaded (no in-flight slot in time)",
                            registry=self.registry)
        self.body_timeouts = Counter("nareta_http_body_timeouts",
                                     "requests cut off with 408: the body came too slowly",
                                     registry=self.registry)
        self.registry.register(_PredictorCollector(app_state))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one request; ``route`` is a route template (or ``unmatched``), never a
        raw path."""
        method = method if method in HTTP_METHODS else "OTHER"
        status = status if 100 <= status <= 599 else 500
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
