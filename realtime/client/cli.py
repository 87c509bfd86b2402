"""The ``realtime`` command line: the cron job's and the shell's tool.

``realtime token`` mints JWTs; it reads the same ``REALTIME_*`` variables as the server and never
connects to Redis, so it works wherever the key is available. ``realtime publish`` and
``realtime listen`` speak HTTP to a running server through :mod:`realtime.client`, and add only
what a command needs: arguments, output lines and exit codes.

Exit codes, stable because scripts branch on them: 0 ok; 2 usage, configuration, or input the
server refuses (400, 413, 415); 3 authentication (no token, a bad one, or one without the topic:
401, 403); 4 the server or the network failed on every attempt. A failure prints one sentence to
stderr (the server's own message when it sent one), never a traceback and never the token.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Callable
from contextlib import closing
from typing import Any, NoReturn, TypeVar

import click

from realtime.client import (
    DEFAULT_URL,
    AuthFailed,
    Event,
    Refused,
    RequestError,
    parse_url,
    subscribe,
)
from realtime.client import publish as publish_event
from realtime.core.auth import mint_token, parse_duration
from realtime.core.config import Settings, load_settings
from realtime.core.errors import ConfigError
from realtime.core.version import __version__
from realtime.ops.devsecret import dev_secret_path


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    if value.lower() in ("never", "none", "0"):
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNAVAILABLE = 4

EXIT_CODES_HELP = """\b
Exit codes:
  0  success
  2  usage error, or input the server refuses (400, 413, 415)
  3  authentication: no token, a bad one, or one without the topic
  4  the server or the network failed on every attempt"""

F = TypeVar("F", bound=Callable[..., Any])


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.version_option(__version__, package_name="flask-realtime")
def main() -> None:
    """realtime: SSE-first notifications for Flask."""


class CommandFailed(click.ClickException):
    """One sentence on stderr and exit 2, instead of a traceback: bad input or usage."""

    exit_code = EXIT_USAGE


class NotAuthorized(CommandFailed):
    """The token was refused (401) or does not grant the topic (403): exit 3."""

    exit_code = EXIT_AUTH


class TryLater(CommandFailed):
    """The server could not serve it now (429, 503, unreachable): exit 4, worth retrying.
    (Not ``Unavailable``: that is the server's 503 exception in :mod:`realtime.core.errors`.)"""

    exit_code = EXIT_UNAVAILABLE


def failure(exc: RequestError, token: str | None) -> CommandFailed:
    """The exit code of a client error; the message is the server's sentence, token-free."""
    kind: type[CommandFailed]
    if isinstance(exc, AuthFailed):
        kind = NotAuthorized
    elif isinstance(exc, Refused):
        kind = CommandFailed
    else:
        kind = TryLater
    message = exc.message
    if token:
        message = message.replace(token, "[redacted]")  # defence in depth: no message echoes it
    return kind(message)


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        parse_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return value


def _strip_token(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """``REALTIME_TOKEN=$(cat file)`` keeps no newline, but a pasted one may carry spaces."""
    value = value.strip() if value else None
    return value or None


def server_options(command: F) -> F:
    """``--url``, ``--token`` and ``-v``, shared by the commands that talk to a server."""
    command = click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Report retries and reconnects on stderr.",
    )(command)
    command = click.option(
        "--token",
        envvar="REALTIME_TOKEN",
        show_envvar=True,
        default=None,
        callback=_strip_token,
        help="The bearer token (prefer the variable: arguments show in ps).",
    )(command)
    command = click.option(
        "--url",
        envvar="REALTIME_URL",
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        callback=_check_url,
        help="The server's base URL.",
    )(command)
    return command


def _report_retries(verbose: bool) -> None:
    if not verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("realtime: %(message)s"))
    logger = logging.getLogger("realtime.client")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def token_options(command: F) -> F:
    """What a minted token holds: ``--sub``, ``--publish``, ``--subscribe``, ``--ttl`` and the
    ``--private-key`` to sign with; shared by ``realtime token`` and ``flask realtime token``."""
    for option in reversed(_TOKEN_OPTIONS):
        command = option(command)
    return command


_TOKEN_OPTIONS = [
    click.option("--sub", "subject", default=None, help="The token's subject (who it is for)."),
    click.option(
        "--publish",
        "publish",
        multiple=True,
        metavar="PATTERN",
        help="A topic or glob the token may publish to; repeatable.",
    ),
    click.option(
        "--subscribe",
        "subscribe",
        multiple=True,
        metavar="PATTERN",
        help="A topic or glob the token may subscribe to; repeatable.",
    ),
    click.option(
        "--ttl",
        default="1h",
        show_default=True,
        callback=_duration,
        help="Lifetime: 90s, 15m, 12h, 30d, 2w, or 'never'.",
    ),
    click.option(
        "--private-key",
        type=click.Path(exists=True, dir_okay=False),
        default=None,
        help="PEM private key for RS256/ES256 (the server holds the public half).",
    ),
]


@main.command(short_help="Mint a token for a cron job, a service or a dashboard.")
@token_options
@click.option("--new-secret", is_flag=True, help="Print a fresh random HS256 secret and exit.")
def token(
    subject: str | None,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    ttl: int | None,
    private_key: str | None,
    new_secret: bool,
) -> None:
    """Mint a token, e.g. ``realtime token --publish 'orders:*' --ttl 30d``.

    The key is REALTIME_JWT_SECRET, or --private-key, or (outside production) the development
    secret that `make run` created under REALTIME_DATA_DIR.
    """
    if new_secret:
        click.echo(secrets.token_urlsafe(48))
        return
    if not publish and not subscribe:
        raise click.UsageError("Give at least one --publish or --subscribe pattern.")
    try:
        settings = load_settings(
            environ={
                k: v
                for k, v in os.environ.items()
                if k != "REALTIME_JWT_PUBLIC_KEY" or not private_key
            }
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(mint_with(settings, private_key, subject, publish, subscribe, ttl))


def mint_with(
    settings: Settings,
    private_key: str | None,
    subject: str | None,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    ttl: int | None,
) -> str:
    """A token signed with the key ``settings`` name: ``REALTIME_JWT_SECRET``, the PEM file
    ``private_key``, or (outside production) the development secret under
    ``REALTIME_DATA_DIR``; both ``realtime token`` and ``flask realtime token`` mint here."""
    pem = None
    secret = settings.jwt_secret
    if private_key:
        with open(private_key, encoding="ascii") as handle:
            pem = handle.read()
        secret = None
    elif secret is None:
        path = dev_secret_path(settings.data_dir)
        if settings.production or not path.exists():
            raise click.UsageError(
                "No key to sign with: set REALTIME_JWT_SECRET, pass --private-key, or run "
                "`make run` once to create the development secret."
            )
        secret = path.read_text(encoding="ascii").strip()
    try:
        return mint_token(
            secret=secret,
            private_key=pem,
            subject=subject,
            subscribe=subscribe,
            publish=publish,
            ttl_s=ttl,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


# -- publish -------------------------------------------------------------------------------------


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON value")


def read_data(data: str, as_json: bool) -> object:
    """DATA as given, or all of stdin for ``-``; parsed as a JSON value with ``--json``."""
    if data == "-":
        try:
            data = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            raise CommandFailed("Standard input is not UTF-8 text.") from None
    if not as_json:
        return data
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise CommandFailed(
            f"DATA is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except ValueError as exc:
        raise CommandFailed(f"DATA is not valid JSON: {exc}.") from None


def event_arguments(command: F) -> F:
    """TOPIC, DATA, ``--type`` and ``--json``: the event a publish command stores; shared by
    ``realtime publish`` and ``flask realtime publish``."""
    command = click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="DATA is a JSON value: sent as that value, delivered as its compact JSON text.",
    )(command)
    command = click.option(
        "--type", "event_type", default=None, help="The event type  [default: message]"
    )(command)
    command = click.argument("data")(command)
    return click.argument("topic")(command)


@main.command(epilog=EXIT_CODES_HELP)
@event_arguments
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Repeats of a failed attempt (network, 5xx, 429, 408), with jittered backoff.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Seconds to wait for the server on each attempt.",
)
@click.option(
    "--idempotency-key",
    default=None,
    help="Reuse one across runs to publish at most once (default: a fresh one per run).",
)
@server_options
def publish(
    topic: str,
    data: str,
    event_type: str | None,
    as_json: bool,
    retries: int,
    timeout: float,
    idempotency_key: str | None,
    url: str,
    token: str | None,
    verbose: bool,
) -> None:
    """Publish DATA to TOPIC and print the event's id.

    DATA is the text to deliver; - reads all of standard input (exactly, newlines included).
    Retries reuse one Idempotency-Key, so an event is stored once however many attempts it takes:

    \b
      realtime publish orders '{"id": 7}' --json --type created
      realtime publish reports:daily - < /var/reports/summary.json
    """
    if not token:
        raise NotAuthorized("Publishing needs a token: set REALTIME_TOKEN (or pass --token).")
    value = read_data(data, as_json)
    _report_retries(verbose)
    try:
        event_id = publish_event(
            url,
            topic,
            value,
            type=event_type,
            token=token,
            idempotency_key=idempotency_key,
            retries=retries,
            timeout=timeout,
        )
    except RequestError as exc:
        raise failure(exc, token) from None
    except ValueError as exc:  # a token or key with a line break: refused before sending
        raise CommandFailed(str(exc)) from None
    click.echo(event_id)


# -- listen --------------------------------------------------------------------------------------


def escape(data: str) -> str:
    """Data on one line of a tab-separated output: backslash, newline and tab escaped."""
    return data.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")


def text_line(event: Event) -> str:
    return f"{event.id}\t{event.topic or '-'}\t{event.type}\t{escape(event.data)}"


def json_line(event: Event) -> str:
    return json.dumps(
        {"id": event.id, "topic": event.topic, "type": event.type, "data": event.data}
    )


def reset_sentence(event: Event) -> str:
    try:
        reason = json.loads(event.data).get("reason", "unknown")
    except (ValueError, AttributeError):
        reason = "unknown"
    return (
        f"realtime: reset ({reason}): events may have been missed; refetch your state. "
        f"Following live events from {event.id}."
    )


@main.command(epilog=EXIT_CODES_HELP)
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC...")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per line: id, topic, type, data (and reset notices).",
)
@click.option("--last-id", default=None, help="Resume after this event id.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=45.0,
    show_default=True,
    help="Seconds of silence (heartbeats included) before the stream is reopened.",
)
@click.option(
    "--max-backoff",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="The longest wait, in seconds, between attempts to reconnect.",
)
@server_options
def listen(
    topics: tuple[str, ...],
    as_json: bool,
    last_id: str | None,
    timeout: float,
    max_backoff: float,
    url: str,
    token: str | None,
    verbose: bool,
) -> None:
    """Print the events of TOPIC... as they arrive, until Ctrl-C.

    Each line is ID, TOPIC, TYPE and DATA separated by tabs, with backslash, newline and tab in
    DATA escaped as \\\\, \\n and \\t; --json prints JSON objects instead. Server restarts
    and network drops are followed by a resume from the last id, so no event is missed or
    printed twice. A reset (history lost: refetch your state) is reported on stderr.
    """
    _report_retries(verbose)
    try:
        events = subscribe(
            url, topics, token=token, last_id=last_id, timeout=timeout, max_backoff=max_backoff
        )
    except ValueError as exc:  # a token or id with a line break: refused before connecting
        raise CommandFailed(str(exc)) from None
    try:
        with closing(events):
            for event in events:
                _print_event(event, as_json, verbose)
    except KeyboardInterrupt:
        return
    except BrokenPipeError:
        # The reader went away (`| head`): quiet, and no second error when Python flushes stdout.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return
    except RequestError as exc:
        raise failure(exc, token) from None


def _print_event(event: Event, as_json: bool, verbose: bool) -> None:
    if event.type == "reset":
        click.echo(reset_sentence(event), err=True)
        if as_json:
            click.echo(json_line(event))
    elif event.is_notice:  # overflow, shutdown: the client resumes losslessly by itself
        if verbose:
            click.echo(f"realtime: {event.type} notice; resuming from {event.id}.", err=True)
    else:
        click.echo(json_line(event) if as_json else text_line(event))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
