"""What receivers get: the Alertmanager webhook payload and Alertmanager's ``/api/v2/alerts`` body.

Shapes follow Alertmanager's own source (``notify/webhook/webhook.go`` ``Message`` and
``template/template.go`` ``Data``/``Alert``, v0.25–0.28), so every receiver written for Alertmanager
works unchanged: ``version`` "4", ``groupKey``, ``truncatedAlerts``, ``status``, ``receiver``,
``groupLabels``, ``commonLabels``, ``commonAnnotations``, ``externalURL`` and ``alerts`` with
``status``, ``labels``, ``annotations``, ``startsAt``, ``endsAt`` (Go's zero time while firing),
``generatorURL``, ``fingerprint``. Pure functions; times are Unix seconds in, RFC 3339 out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

__all__ = ["GO_ZERO_TIME", "alertmanager_alert", "generator_url", "rfc3339", "webhook_message"]

#: What Alertmanager puts in ``endsAt`` of a firing alert without an end (Go's zero ``time.Time``).
GO_ZERO_TIME: Final = "0001-01-01T00:00:00Z"


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return GO_ZERO_TIME
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generator_url(external_url: str, fp: str, at: float | None = None) -> str:
    """The dashboard's alerts page, opened on this alert, as the wall stood at ``at`` (the moment it
    fired; time travel, docs/frontend.md) when given:
    ``http://dash:8787/alerts?fingerprint=f1&at=2025-11-27T09:40:30.000Z``.

    ``at`` is rounded up to the millisecond: the view of the tick that fired the alert has
    ``meta.generated_at`` = that tick's time to the millisecond, and ``view?at=`` shows the last tick
    at or before ``at``, so a truncated time could open the tick before (the alert still pending)."""
    url = f"{external_url.rstrip('/')}/alerts?fingerprint={quote(fp)}"
    if at is None or not math.isfinite(at):
        return url
    return f"{url}&at={quote(rfc3339(math.ceil(at * 1000) / 1000), safe=':')}"


def _labels(a: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (a.get("labels") or {}).items()}


def _annotations(a: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (a.get("annotations") or {}).items() if v is not None}


def _starts(a: Mapping[str, Any]) -> float | None:
    # Alertmanager's startsAt is when the alert fired (Prometheus sends its FiredAt), not when pending began.
    fired = a.get("fired_at")
    return float(fired) if isinstance(fired, (int, float)) else a.get("starts_at")


def webhook_alert(a: Mapping[str, Any], external_url: str) -> dict[str, Any]:
    status = "resolved" if a.get("status") == "resolved" else "firing"
    return {
        "status": status, "labels": _labels(a), "annotations": _annotations(a),
        "startsAt": rfc3339(_starts(a)),
        "endsAt": rfc3339(a.get("ends_at") if status == "resolved" else None),
        "generatorURL": generator_url(external_url, str(a["fingerprint"]), _starts(a)),
        "fingerprint": str(a["fingerprint"]),
    }


def webhook_message(alerts: Sequence[Mapping[str, Any]], receiver: str, external_url: str) -> dict[str, Any]:
    """The webhook body for ``alerts`` (grouped by alertname, like Alertmanager's default route)."""
    items = [webhook_alert(a, external_url) for a in alerts]
    common_l = dict(items[0]["labels"]) if items else {}
    common_a = dict(items[0]["annotations"]) if items else {}
    for it in items[1:]:
        common_l = {k: v for k, v in common_l.items() if it["labels"].get(k) == v}
        common_a = {k: v for k, v in common_a.items() if it["annotations"].get(k) == v}
    group = {"alertname": common_l["alertname"]} if "alertname" in common_l else {}
    key_labels = ", ".join(f'{k}="{v}"' for k, v in sorted(group.items()))
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{key_labels}}}",
        "truncatedAlerts": 0,
        "status": "firing" if any(i["status"] == "firing" for i in items) else "resolved",
        "receiver": receiver,
        "groupLabels": group,
        "commonLabels": common_l,
        "commonAnnotations": common_a,
        "externalURL": external_url,
        "alerts": items,
    }


def alertmanager_alert(a: Mapping[str, Any], now: float, resend_s: float,
                       external_url: str) -> dict[str, Any]:
    """One ``postableAlert`` of Alertmanager's v2 API.

    A firing alert gets ``endsAt`` = now + 4 resend periods (what Prometheus does): if opsdash stops
    re-sending, Alertmanager resolves it by itself instead of keeping a ghost. A resolved one gets
    its real end."""
    resolved = a.get("status") == "resolved"
    ends = a.get("ends_at") if resolved else now + 4 * resend_s
    return {
        "labels": _labels(a), "annotations": _annotations(a),
        "startsAt": rfc3339(_starts(a)), "endsAt": rfc3339(ends if ends is not None else now),
        "generatorURL": generator_url(external_url, str(a["fingerprint"]), _starts(a)),
    }
