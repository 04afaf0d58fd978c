"""``depends_on`` in the status message: optional, validated, sent by the reporter."""

from __future__ import annotations

import msgspec
import pytest

from telemetry_bus.contract import decode_status, encode
from telemetry_bus.reporter import Reporter, ReporterCore


def test_old_status_without_depends_on_stays_valid() -> None:
    st = decode_status(b'{"state": "online", "boot": "b1", "version": "2.4.1", "interval_s": 1.0}')
    assert st.depends_on == []
    assert b"depends_on" in encode(st)  # new senders always say it (an empty list: no edges)


def test_depends_on_decodes_and_is_validated() -> None:
    st = decode_status(b'{"state": "online", "boot": "b1", "depends_on": ["postgres", "mqtt"]}')
    assert st.depends_on == ["postgres", "mqtt"]
    with pytest.raises(msgspec.ValidationError, match=r"depends_on\[0\]"):
        decode_status(b'{"state": "online", "boot": "b1", "depends_on": ["Postgres"]}')
    with pytest.raises(msgspec.ValidationError, match="depends_on"):
        decode_status(b'{"state": "online", "boot": "b1", "depends_on": "postgres"}')
    too_many = ",".join(f'"s{i}"' for i in range(33))
    with pytest.raises(msgspec.ValidationError, match="depends_on"):
        decode_status(f'{{"state": "online", "boot": "b1", "depends_on": [{too_many}]}}'.encode())


def test_reporter_sends_depends_on_in_every_status() -> None:
    rep = Reporter("delivery", "delivery-1", mqtt_url="mqtt://127.0.0.1:1", depends_on=["postgres", "postgres"])
    assert rep.depends_on == ("postgres",)
    core = ReporterCore("b1", 1.0, 0.0)
    st = core.status("offline", 5.0, "lost", "1.0", rep.depends_on)
    assert decode_status(encode(st)).depends_on == ["postgres"]
    with pytest.raises(ValueError, match="depends_on entry 'Post gres'"):
        Reporter("delivery", "delivery-1", mqtt_url="mqtt://127.0.0.1:1", depends_on=["Post gres"])
