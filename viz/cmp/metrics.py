"""viz-cmp's Prometheus counters: decisions by tier and method, GPC caps, refused tokens,
status answers."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from viz.cmp.models import LEDGER_METHODS, TIERS


class CmpMetrics:
    """Registered once per application on its own registry (served at ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "viz_cmp_decisions_total", "Consent decisions recorded, by recorded tier and method",
            ["tier", "method"], registry=registry)
        self.gpc_capped = Counter(
            "viz_cmp_gpc_capped_total",
            "Decisions whose tier a Sec-GPC: 1 signal capped (the visitor asked for more)",
            registry=registry)
        self.gpc_signals = Counter(
            "viz_cmp_gpc_signals_total", "Decisions sent with Sec-GPC: 1", registry=registry)
        self.status = Counter(
            "viz_cmp_status_total", "Status answers by where the tier came from",
            ["source"], registry=registry)
        self.cookies_rejected = Counter(
            "viz_cmp_cookies_rejected_total",
            "viz_consent cookies presented that did not verify (forged, expired, other tenant "
            "or browser)", registry=registry)
        self.tokens_refused = Counter(
            "viz_cmp_tokens_refused_total",
            "Decisions refused for their collect token, by reason (token_required, "
            "token_expired, token_invalid)", ["reason"], registry=registry)
        for reason in ("token_required", "token_expired", "token_invalid"):
            self.tokens_refused.labels(reason)
        for tier in TIERS:  # every series exists from the start, at zero
            for method in LEDGER_METHODS:
                self.decisions.labels(str(tier), method)
        for source in ("cookie", "record", "none"):
            self.status.labels(source)
