"""Operations: what running the service needs beside the product itself.

Metrics, the garbage-collector policy, gunicorn's logger and error pages, log redaction and
the development secret. It may import :mod:`realtime.core` only, so every other layer may
count and log through it.
"""
