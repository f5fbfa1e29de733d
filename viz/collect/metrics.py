"""Prometheus metrics of one collect process, in a registry of its own (never the global one).

Label values come from closed sets (routes, statuses, drop reasons, error codes). What every
request touches (requests by route and status, events, delivery latency) is counted in plain
ints and read only at scrape time: a ``prometheus_client`` child takes a lock and two checks
per ``inc()``, about 1 µs each, several times per request. Rare outcomes (drops, failures)
keep ordinary children bound once.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from viz.collect.errors import ALL_ERRORS
from viz.collect.pipeline import DROP_REASONS, LINKER_REFUSALS
from viz.common.site_directory import SiteDirectory

ROUTES = ("init", "collect", "hit", "options", "healthz", "readyz", "metrics", "other")
DELIVERY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class EventCounter:
    """A label-free counter with the ``inc(amount)`` of a Prometheus child, without a lock
    (only the event loop thread writes it); exported by :class:`_HotCollector`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self, amount: int = 1) -> None:
        self.value += amount


class DeliveryHistogram:
    """Cumulative-bucket histogram of delivery seconds, counted per bucket, summed at scrape."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(DELIVERY_BUCKETS_S) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(DELIVERY_BUCKETS_S, seconds)] += 1
        self.sum += seconds


class CollectMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests: dict[tuple[str, int], int] = {}
        """``(route, status)`` -> requests answered; see :meth:`request`."""
        drops = Counter("viz_collect_drops_total",
                        "Requests deliberately dropped (answered 204 + X-Viz-Dropped), by reason",
                        ["reason"], registry=r)
        self.drops = {reason: drops.labels(reason) for reason in DROP_REASONS}
        failures = Counter("viz_collect_failures_total",
                           "Requests answered with an error, by failure class", ["code"],
                           registry=r)
        self.failures = {cls.code: failures.labels(cls.code) for cls in ALL_ERRORS}
        refused = Counter("viz_collect_linker_refused_total",
                          "Cross-domain linkers (GET /init?lk=) not adopted, by reason",
                          ["reason"], registry=r)
        self.linker_refused = {reason: refused.labels(reason) for reason in LINKER_REFUSALS}
        self.linker_adopted = Counter("viz_collect_linker_adopted_total",
                                      "Cross-domain linkers verified and adopted by GET /init",
                                      registry=r)
        self.events_collect = EventCounter()
        self.events_hit = EventCounter()
        self.delivery_seconds = DeliveryHistogram()
        r.register(_HotCollector(self))

    def request(self, route: str, status: int) -> None:
        key = (route, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1

    def watch(self, directory: SiteDirectory, queued: Callable[[], int]) -> None:
        """Export the site cache's counters and the producer's queue depth (read at scrape)."""
        self.registry.register(_DirectoryCollector(directory))
        gauge = Gauge("viz_collect_producer_queued_messages",
                      "Messages in the producer's local queue or awaiting a delivery report",
                      registry=self.registry)
        gauge.set_function(lambda: float(queued()))


    def watch_producer(self, sink: Any) -> None:
        """Export how often the Kafka sink replaced its producer, by reason (``sink.recreated``,
        see :class:`viz.collect.sinks.KafkaSink`), and whether it is recovering from that."""
        self.registry.register(_ProducerCollector(sink))

    def watch_lane(self, lane: Any) -> None:
        """Export how many ``POST /collect`` requests the compiled lane answered itself and how
        many it handed back to the Python path (``viz.collect._lane_c.CollectLane``)."""
        self.registry.register(_LaneCollector(lane))


class _LaneCollector(Collector):
    def __init__(self, lane: Any) -> None:
        self._lane = lane

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "viz_collect_lane_requests",
            "POST /collect requests by who answered: the compiled lane itself, or the Python "
            "path it handed them back to (every error, drop and uncached case)",
            labels=["path"])
        family.add_metric(["lane"], float(self._lane.answered))
        family.add_metric(["handed_back"], float(self._lane.handed_back))
        yield family


class _ProducerCollector(Collector):
    def __init__(self, sink: Any) -> None:
        self._sink = sink

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "viz_collect_producer_recreated",
            "Kafka producers replaced because they could no longer deliver, by reason "
            "(fatal: a fatal librdkafka error; poll_error: poll raised anything else)",
            labels=["reason"])
        for reason, count in sorted(self._sink.recreated.items()):
            family.add_metric([reason], float(count))
        yield family
        yield GaugeMetricFamily(
            "viz_collect_producer_recovering",
            "1 while a recreated producer has not delivered anything yet (/readyz says 503)",
            value=float(self._sink.recovering))


class _HotCollector(Collector):
    """Exports the per-request counters of :class:`CollectMetrics` under their usual names."""

    def __init__(self, metrics: CollectMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        m = self._metrics
        requests = CounterMetricFamily("viz_collect_requests", "HTTP requests by route and status",
                                       labels=["route", "status"])
        for (route, status), value in sorted(m.requests.items()):
            requests.add_metric([route, str(status)], float(value))
        yield requests
        events = CounterMetricFamily("viz_collect_events",
                                     "Events acknowledged by the broker, by route",
                                     labels=["route"])
        events.add_metric(["collect"], float(m.events_collect.value))
        events.add_metric(["hit"], float(m.events_hit.value))
        yield events
        hist = m.delivery_seconds
        cumulative = 0
        buckets = []
        for le, count in zip((*(str(float(b)) for b in DELIVERY_BUCKETS_S), "+Inf"),
                             hist.counts, strict=True):
            cumulative += count
            buckets.append((le, float(cumulative)))
        yield HistogramMetricFamily(
            "viz_collect_delivery_seconds",
            "From handing a request's events to the producer until every delivery report",
            buckets=buckets, sum_value=hist.sum)


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
