"""The fold's output for a recorded stream is byte-identical to what was recorded (tests/bus/replay.py)."""

from __future__ import annotations

import json

from telemetry_bus.contract import encode
from tests.bus.replay import EXPECTED, load_stream, replay


def test_replayed_stream_gives_the_recorded_views_byte_for_byte() -> None:
    expected = json.loads(EXPECTED.read_text())
    digests, last = replay(load_stream())
    # the whole last view first: a failure shows what changed, not only that a hash did
    on_purpose = ("if the view changed on purpose, re-record: python -m tests.bus.replay --record "
                  "(and say why in the commit)")
    assert json.loads(encode(last.view)) == expected["last_view"], on_purpose
    assert len(digests) == len(expected["ticks"])
    changed = [i for i, (a, b) in enumerate(zip(digests, expected["ticks"], strict=True)) if a != b]
    assert not changed, f"ticks {changed[:10]} differ from the recording; {on_purpose}"
