"""The pure core: wire formats and rules, with no I/O.

Ids, events, the SSE encoder and parser, the WebSocket JSON messages, topics and patterns,
tokens, access rules, publish-body validation, settings validation and the error registry.
Everything here is a function of its arguments: it imports the standard library, PyJWT and
its own siblings, and never Flask, gevent, redis or sockets (``tests/system/test_layers.py``
holds it).
"""
