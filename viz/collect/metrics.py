"""Prometheus metrics of one collect process, in a registry of its own (never the global one).

Label values come from closed sets (routes, statuses, drop reasons, error codes); children are
bound once so the hot path does a dict lookup and an ``inc()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from viz.collect.errors import ALL_ERRORS
from viz.collect.pipeline import DROP_REASONS
from viz.common.site_directory import SiteDirectory

ROUTES = ("init", "collect", "hit", "options", "healthz", "readyz", "metrics", "other")


class CollectMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter("viz_collect_requests_total", "HTTP requests by route and status",
                                 ["route", "status"], registry=r)
        self._request_children: dict[tuple[str, int], Callable[[], None]] = {}
        drops = Counter("viz_collect_drops_total",
                        "Requests deliberately dropped (answered 204 + X-Viz-Dropped), by reason",
                        ["reason"], registry=r)
        self.drops = {reason: drops.labels(reason) for reason in DROP_REASONS}
        failures = Counter("viz_collect_failures_total",
                           "Requests answered with an error, by failure class", ["code"],
                           registry=r)
        self.failures = {cls.code: failures.labels(cls.code) for cls in ALL_ERRORS}
        events = Counter("viz_collect_events_total",
                         "Events acknowledged by the broker, by route", ["route"], registry=r)
        self.events_collect = events.labels("collect")
        self.events_hit = events.labels("hit")
        self.delivery_seconds = Histogram(
            "viz_collect_delivery_seconds",
            "From handing a request's events to the producer until every delivery report",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))

    def request(self, route: str, status: int) -> None:
        inc = self._request_children.get((route, status))
        if inc is None:
            inc = self._requests.labels(route, str(status)).inc
            self._request_children[(route, status)] = inc
        inc()

    def watch(self, directory: SiteDirectory, queued: Callable[[], int]) -> None:
        """Export the site cache's counters and the producer's queue depth (read at scrape)."""
        self.registry.register(_DirectoryCollector(directory))
        gauge = Gauge("viz_collect_producer_queued_messages",
                      "Messages in the producer's local queue or awaiting a delivery report",
                      registry=self.registry)
        gauge.set_function(lambda: float(queued()))


class _DirectoryCollector(Collector):
    _COUNTERS = ("hits", "misses", "stale_served", "negative_hits", "fetch_errors", "evictions")

    def __init__(self, directory: SiteDirectory) -> None:
        self._directory = directory

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily("viz_collect_site_cache",
                                     "Site directory lookups by outcome", labels=["outcome"])
        for name in self._COUNTERS:
            family.add_metric([name], float(getattr(self._directory, name)))
        yield family
