"""gunicorn's own error lines (not only access lines) never carry a query-string token."""

from __future__ import annotations

import logging

import pytest
from gunicorn.config import Config

from realtime.ops.gunicorn_logging import RedactingLogger

SECRET_TOKEN = "eyJhbGciOiJIUzI1NiJ9.secret.part"


def test_error_handling_request_line_is_redacted(caplog: pytest.LogCaptureFixture) -> None:
    logger = RedactingLogger(Config())
    logger.error_log.propagate = True
    with caplog.at_level(logging.DEBUG, logger="gunicorn.error"):
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logger.exception(
                "Error handling request %s", f"/events?topic=a&access_token={SECRET_TOKEN}"
            )
        logger.warning(f"odd /ws?access_token={SECRET_TOKEN}")
    text = caplog.text
    assert "access_token=[redacted]" in text
    assert SECRET_TOKEN not in text
