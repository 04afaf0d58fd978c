"""A reporter in its own process, for kill -9 / SIGSTOP tests: python -m tests.support.reporter_proc URL SVC INST.

Counts ``messages_received`` at ``--rate`` per second and prints ``connected`` once online.
"""

from __future__ import annotations

import argparse
import asyncio

from telemetry_bus.reporter import Reporter


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("service")
    p.add_argument("instance")
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--rate", type=int, default=10)
    p.add_argument("--root", default="$ops")
    a = p.parse_args()
    rep = Reporter(a.service, a.instance, mqtt_url=a.url, topic_root=a.root, interval_s=a.interval)
    await rep.start()
    await rep.wait_connected()
    print("connected", flush=True)
    while True:
        rep.inc("messages_received", a.rate // 10 or 1)
        await asyncio.sleep(0.1)


if __name__ == "__main__":
    asyncio.run(main())
