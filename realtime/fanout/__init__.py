"""Fan-out: one worker's delivery of stored events to every open stream.

The hub (one reader on the live feed, dispatch by topic), each connection's SSE stream, the
direct socket writes, the slow-client cut and presence. It may import storage, ops and core;
it knows nothing of Flask, routes or request parsing.
"""
