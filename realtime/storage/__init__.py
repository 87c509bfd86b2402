"""Storage: where events live, in order, so a reconnecting client gets exactly what it missed.

The broker's interface (publish → id, replay since a position, the live feed, epochs), its
Redis Streams implementation, the Lua scripts it runs (``lua/*.lua``, shipped in the wheel),
the pipelining batcher and the embedded Redis. It may import :mod:`realtime.core` and
:mod:`realtime.ops` (metrics), never the fan-out or a front door.
"""
