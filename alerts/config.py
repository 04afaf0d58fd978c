"""The ``[alerts]`` configuration section (design.md section 9).

    [alerts]
    keep_firing_s = 30                 # default of every rule's keep_firing_s
    webhook_urls = ["http://127.0.0.1:9099/hook"]       # OPSDASH_ALERTS__WEBHOOK_URLS
    alertmanager_urls = ["http://127.0.0.1:9093"]        # OPSDASH_ALERTS__ALERTMANAGER_URLS

    [[alerts.rules]]                   # a rule of your own
    name = "ingest_queue_deep"
    metric = "gauge:ingest:queue_depth"
    op = ">"
    value = 1000
    for_s = 30
    severity = "warning"
    summary = "ingest queue above 1,000 messages"

    [[alerts.rules]]                   # a built-in switched off
    name = "component_degraded"
    enabled = false

Rules are compiled (and checked) when the configuration is decoded, so a bad rule stops the program
with a message naming the rule and the field (:class:`alerts.engine.RuleError`).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["AlertsConfig", "RuleConfig"]

NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[float, msgspec.Meta(gt=0)]


class RuleConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One ``[[alerts.rules]]`` entry. Unset fields of a rule named like a built-in keep the built-in's."""

    name: str
    metric: str | None = None
    op: str | None = None
    value: float | str | None = None
    for_s: float | None = None
    keep_firing_s: float | None = None
    severity: str | None = None
    summary: str | None = None
    enabled: bool = True


class AlertsConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    #: Default ``keep_firing_s`` of every rule: how long a condition must stay false before resolve.
    keep_firing_s: NonNegative = 30.0
    rules: list[RuleConfig] = []
    #: Receivers of the Alertmanager webhook payload (version "4"), one POST per firing and resolve.
    webhook_urls: list[str] = []
    #: Alertmanager base URLs (``http://host:9093``); alerts are POSTed to ``/api/v2/alerts``.
    alertmanager_urls: list[str] = []
    #: Re-send period of firing alerts to Alertmanager (Prometheus re-sends every minute).
    alertmanager_resend_s: Positive = 60.0
    #: Base URL of the dashboard for ``generatorURL`` / ``externalURL``; empty = from gateway.listen.
    external_url: str = ""
    #: Seconds one POST may take before it counts as failed (and is retried).
    timeout_s: Positive = 5.0
    #: Retry backoff: first delay and cap (jittered, doubling).
    retry_min_s: Positive = 0.5
    retry_max_s: Positive = 30.0
    #: Resolved alerts kept for ``recent`` (REST, view) for 24 h, at most this many.
    recent_max: Annotated[int, msgspec.Meta(ge=0, le=10000)] = 200
    #: Whether ``opsdash up``/``demo`` run the notifier in-process (compose runs ``opsdash notifier``).
    notifier: bool = True

    def __post_init__(self) -> None:
        from alerts.engine import compile_rules

        compile_rules(self)  # raises RuleError (a ValueError) naming the rule and the field
        for key, urls in (("webhook_urls", self.webhook_urls), ("alertmanager_urls", self.alertmanager_urls)):
            for url in urls:
                if not url.startswith(("http://", "https://")):
                    raise ValueError(f"{key}: must be http:// or https:// URLs, got {url!r}")
