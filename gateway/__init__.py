"""The gateway: serves the aggregator's view over WebSocket (snapshot + merge patches) and REST.

``gateway.store`` (pure view store), ``gateway.rest`` (seed JSON shapes, Prometheus text),
``gateway.auth`` (none / token / oidc), ``gateway.server`` (``opsdash gateway``),
``gateway.watch`` (``opsdash watch``). See docs/websocket.md and docs/gateway.md.
"""
