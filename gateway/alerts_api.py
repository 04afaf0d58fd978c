"""Alerts over REST (design.md section 9): list, acknowledge, silence.

- ``GET /operator/system/alerts``: ``{"alerts": [active], "recent": [resolved in the last 24 h],
  "silences": [active]}``, from the view's ``alerts`` section;
- ``POST /operator/system/alerts/{fingerprint}/ack``: acknowledge an active alert (no body);
- ``POST /operator/system/silences``: ``{"matchers": {...}, "duration_s": 3600, "comment": "..."}``;
- ``DELETE /operator/system/silences/{id}``: end a silence now.

Acks and silences are written as retained messages (``<root>/v1/alertstate/ack/<fp>``,
``<root>/v1/alertstate/silence/<id>``, QoS 1; see alerts/bus.py): the broker is their memory, so they
survive a restart of every opsdash part, and every gateway and the aggregator see the same. The
aggregator applies them at its next regular tick (within a second); the answer says what was written.
Writes need an operator: display tokens get 403 (their routes have no ``section``), and in OIDC mode
only tokens with the ``operator`` role get this far.
"""

from __future__ import annotations

import logging
import re
import secrets
from typing import TYPE_CHECKING, Annotated, Any, Final

import aiomqtt
import msgspec

from alerts.bus import alert_topics
from gateway.routes import HttpRequest, Reply

if TYPE_CHECKING:
    from gateway.server import Gateway

__all__ = ["SilenceBody", "install"]

log = logging.getLogger("opsdash.gateway.alerts")

FINGERPRINT: Final = re.compile(r"^[0-9a-f]{16}$")
SILENCE_ID: Final = re.compile(r"^[0-9a-f]{16}$")
_PAYLOAD_KEYS: Final = ("fingerprint", "status", "labels", "annotations", "value", "starts_at", "ends_at",
                        "acked_by", "silenced_until", "inhibited_by", "fired_at", "acked_at")
_enc = msgspec.json.Encoder()

LabelName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
LabelValue = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class SilenceBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    matchers: Annotated[dict[LabelName, LabelValue], msgspec.Meta(min_length=1, max_length=16)]
    duration_s: Annotated[float, msgspec.Meta(ge=60, le=30 * 86400)]
    comment: Annotated[str, msgspec.Meta(max_length=500)] = ""


def _full(a: Any) -> dict[str, Any]:
    """The view is canonical (``null`` members dropped): put the contract's keys back."""
    out = {k: None for k in _PAYLOAD_KEYS}
    if isinstance(a, dict):
        out.update(a)
    return out


def _section(gw: Gateway) -> dict[str, Any] | None:
    state = gw.store.state
    if state is None:
        return None
    sec = state.get("alerts")
    return sec if isinstance(sec, dict) else {}


def _who(req: HttpRequest) -> str:
    p = req.principal
    return p.subject if p is not None else "anonymous"


async def _publish(gw: Gateway, topic: str, payload: bytes) -> str | None:
    """Write one retained QoS 1 message; the reason when the broker cannot be reached."""
    ep = gw.mqtt.endpoint()
    try:
        async with aiomqtt.Client(ep.host, ep.port, username=ep.username, password=ep.password,
                                  identifier=f"opsdash-gateway-alerts-{secrets.token_hex(4)}",
                                  tls_params=aiomqtt.TLSParameters() if ep.tls else None, timeout=5) as c:
            await c.publish(topic, payload, qos=1, retain=True)
    except aiomqtt.MqttError as exc:
        log.warning("alerts: could not write %s (%s)", topic, exc)
        return str(exc)
    return None


def _unavailable(why: str) -> Reply:
    return Reply(503, {"error": "broker_unavailable", "message": f"could not write to the broker: {why}"},
                 [("Retry-After", "2")])


async def get_alerts(req: HttpRequest) -> Reply:
    sec = _section(req.gateway)
    if sec is None:
        return Reply(503, {"error": "no_view", "message": "no view received from the aggregator yet"},
                     [("Retry-After", "2")])
    active = [_full(a) for a in [*sec.get("firing", []), *sec.get("pending", [])]]
    recent = [_full(a) for a in sec.get("recent", [])
              if isinstance(a, dict) and (a.get("ends_at") or 0) >= req.wall_now - 86400]
    return Reply(200, {"alerts": active, "recent": recent, "silences": list(sec.get("silences", []))})


async def post_ack(req: HttpRequest) -> Reply:
    fp = req.path_params["fingerprint"]
    if not FINGERPRINT.match(fp):
        return Reply(400, {"error": "bad_request", "message": "fingerprint: 16 lowercase hex digits",
                           "parameter": "fingerprint"})
    sec = _section(req.gateway) or {}
    alert = next((a for a in [*sec.get("firing", []), *sec.get("pending", [])]
                  if isinstance(a, dict) and a.get("fingerprint") == fp), None)
    if alert is None:
        return Reply(404, {"error": "not_found", "message": f"no active alert {fp}"})
    body = {"fingerprint": fp, "by": _who(req), "at": round(req.wall_now, 3),
            "starts_at": alert.get("starts_at")}
    topic = alert_topics.state(req.gateway.mqtt.topic_root, "ack", fp)
    why = await _publish(req.gateway, topic, _enc.encode(body))
    if why is not None:
        return _unavailable(why)
    return Reply(200, {"fingerprint": fp, "acked_by": body["by"], "acked_at": body["at"],
                       "starts_at": body["starts_at"]})


async def post_silence(req: HttpRequest) -> Reply:
    s: SilenceBody = req.body
    sid = secrets.token_hex(8)
    now = round(req.wall_now, 3)
    silence = {"id": sid, "matchers": dict(s.matchers), "starts_at": now,
               "ends_at": round(now + s.duration_s, 3), "comment": s.comment, "created_by": _who(req)}
    topic = alert_topics.state(req.gateway.mqtt.topic_root, "silence", sid)
    why = await _publish(req.gateway, topic, _enc.encode(silence))
    if why is not None:
        return _unavailable(why)
    sec = _section(req.gateway) or {}
    matching = [a["fingerprint"] for a in [*sec.get("firing", []), *sec.get("pending", [])]
                if isinstance(a, dict)
                and all((a.get("labels") or {}).get(k) == v for k, v in s.matchers.items())]
    return Reply(201, {**silence, "matching": matching})


async def delete_silence(req: HttpRequest) -> Reply:
    sid = req.path_params["id"]
    if not SILENCE_ID.match(sid):
        return Reply(400, {"error": "bad_request", "message": "id: 16 lowercase hex digits",
                           "parameter": "id"})
    sec = _section(req.gateway) or {}
    if not any(isinstance(s, dict) and s.get("id") == sid for s in sec.get("silences", [])):
        return Reply(404, {"error": "not_found", "message": f"no active silence {sid}"})
    why = await _publish(req.gateway, alert_topics.state(req.gateway.mqtt.topic_root, "silence", sid), b"")
    if why is not None:
        return _unavailable(why)
    return Reply(200, {"id": sid, "expired": True})


def install(gw: Gateway) -> None:
    gw.routes.get("/operator/system/alerts", get_alerts, section="alerts")
    # no `section`: a display token never gets past auth on these (403)
    gw.routes.post("/operator/system/alerts/{fingerprint}/ack", post_ack)
    gw.routes.post("/operator/system/silences", post_silence, body=SilenceBody)
    gw.routes.add("DELETE", "/operator/system/silences/{id}", delete_silence)
