"""Front doors: the HTTP views and the WebSocket endpoint.

Each door is a module of its own (events, publish, presence, health, dashboard, OpenAPI, ``/ws``)
over one shared publish/authorize/error service. Views find their state with
:func:`realtime.web.state.state`; they never import the extension that registers them.
A front door may import every layer below it: fan-out, storage, ops and core.
"""
