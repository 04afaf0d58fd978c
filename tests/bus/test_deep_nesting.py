"""Deeply nested JSON on the bus (issue 17): msgspec raises RecursionError, not DecodeError, for about
a thousand nested arrays (2 KB). Every decoder of the contract turns it into a DecodeError, so the
fold quarantines the message (counted, with a reason) instead of letting it escape the feed."""

from __future__ import annotations

import sys

import msgspec
import pytest

from telemetry_bus import contract
from telemetry_bus.contract import topics
from tests.bus.simulate import ROOT, new_fold

_LEVELS = max(3000, sys.getrecursionlimit() + 100)  # Hypothesis may have raised the limit
DEEP = b"[" * _LEVELS + b"]" * _LEVELS


@pytest.mark.parametrize("name", ["decode_status", "decode_metrics", "decode_event", "decode_probe",
                                  "decode_snapshot", "decode_patch"])
def test_every_contract_decoder_refuses_deep_nesting_as_a_decode_error(name: str) -> None:
    decode = getattr(contract, name)
    for payload in (DEEP, b'{"unknown_field": ' + DEEP + b"}", b'{"attrs": {"a": ' + DEEP + b"}}"):
        with pytest.raises(msgspec.DecodeError):
            decode(payload)


def test_the_fold_quarantines_a_deeply_nested_message() -> None:
    fold = new_fold()
    for kind in ("status", "metrics", "events"):
        fold.feed(topics.svc(ROOT, "ingest", "ingest-0", kind), b'{"x": ' + DEEP + b"}", now=1.0)
    assert fold.state.quarantined == 3
    assert fold.state.quarantine_reasons == {"not valid JSON": 3}
    assert all("nested too deeply" in e["message"] for e in fold.feed_items)


def test_other_bus_readers_drop_deep_nesting() -> None:
    from alerts.bus import AlertsSection, json_decoder
    from history import recorder

    with pytest.raises(msgspec.DecodeError):
        contract.decode_json_value(DEEP)
    with pytest.raises(msgspec.DecodeError):
        json_decoder.decode(DEEP)
    assert recorder._decode_json is contract.decode_json_value  # caught as a rejected message there
    # the aggregator's alerts memory: a deep retained alertstate message is dropped, not raised
    section = AlertsSection.create({}, ROOT)
    section.feed(f"{ROOT}/v1/alertstate/silence/x", DEEP, now=1.0)
    section.feed(f"{ROOT}/v1/alerts/abc", b'{"labels": ' + DEEP + b"}", now=1.0)
