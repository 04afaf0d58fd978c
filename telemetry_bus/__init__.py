"""The ops bus: what platform services embed, and the aggregator that folds what they send.

- ``telemetry_bus.reporter.Reporter``: counters, gauges, latency histograms, events, health, Last Will
  (docs/protocol.md is the same contract for other languages).
- ``telemetry_bus.contract``: the MQTT topics and payloads as msgspec Structs, with their limits.
- ``telemetry_bus.fold.Fold``: the pure aggregator (windows, quantiles, health, errors, the view).
- ``telemetry_bus.service.AggregatorService``: the MQTT adapter around it (``opsdash aggregator``).
"""
