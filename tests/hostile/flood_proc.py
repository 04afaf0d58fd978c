"""The cardinality attacker, in its own process (paho, QoS 0, as fast as it can):
python -m tests.hostile.flood_proc HOST PORT N T PREFIX. Prints the number of messages it published."""

from __future__ import annotations

import sys

import msgspec
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def messages(n: int, t: float, p: str):  # type: ignore[no-untyped-def]
    enc = msgspec.json.encode
    for k in range(n):  # n distinct instance ids of one service, each with its own metric name
        yield (f"$ops/v1/svc/attack/{p}i{k}/metrics",
               enc({"boot": "b", "seq": 1, "t0": t, "t1": t, "counters": {f"{p}m{k}": 1}}))
    for j in range(n // 200):  # n distinct metric names on one instance, 200 per message
        yield (f"$ops/v1/svc/wide/{p}w-1/metrics",
               enc({"boot": "b", "seq": j + 1, "t0": t, "t1": t,
                    "counters": {f"{p}n{j}_{i}": 1 for i in range(200)}}))
    for s in range(1000):  # 1,000 distinct services
        yield (f"$ops/v1/svc/{p}svc{s}/x-1/metrics",
               enc({"boot": "b", "seq": 1, "t0": t, "t1": t, "counters": {"c": 1}}))


def main() -> None:
    host, port, n, t, prefix = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attacker")
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    sent = 0
    for topic, payload in messages(n, t, prefix):
        c.publish(topic, payload, qos=0)
        sent += 1
    # a QoS 1 publish after the flood: once it is acked, everything before it reached the broker
    c.publish("$ops/v1/svc/attack/done/status", b"", qos=1).wait_for_publish(60)
    c.disconnect()
    c.loop_stop()
    print(sent, flush=True)


if __name__ == "__main__":
    main()
