"""``flask realtime ...``: the ``realtime`` commands inside an app's own Flask CLI.

``flask --app myapp realtime token|publish|listen`` read the app's settings (``app.config`` over
the environment, as the server does), so a shell, a cron job or a deploy script of the app needs
no second copy of its configuration. ``publish`` stores the event in process, as ``rt.publish``
does (no server, no token); ``token`` signs with the app's own key; ``listen`` follows a running
server of the app (``--url``, its prefix by default) with a token it mints for the topics. The
standalone ``realtime`` console script stays for machines without the app.

Wiring, like :mod:`realtime.extension`, which adds this group to every app it sets up: it joins
the client's command line (exit codes, sentences, output lines) to the app's state.
"""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from realtime.client import DEFAULT_URL, kind_of
from realtime.client import cli as standalone
from realtime.core.errors import ClientError
from realtime.web.state import RealtimeState, state

group = AppGroup(
    "realtime",
    help="realtime's commands, with this app's settings (see also the `realtime` command).",
)


def app_state() -> RealtimeState:
    return state(current_app)


def refused(exc: ClientError) -> click.ClickException:
    """The exit code and sentence the standalone command gives the same refusal over HTTP."""
    kind = kind_of(exc.status)
    return standalone.failure(kind(exc.message, status=exc.status, code=exc.code), None)


@group.command("token", short_help="Mint a token signed with this app's key.")
@standalone.token_options
def token(
    subject: str | None,
    publish: tuple[str, ...],
    subscribe: tuple[str, ...],
    ttl: int | None,
    private_key: str | None,
) -> None:
    """Mint a token with this app's REALTIME_JWT_SECRET (or --private-key, or outside production
    its development secret), e.g. ``flask realtime token --sub cron --publish 'orders:*'``."""
    if not publish and not subscribe:
        raise click.UsageError("Give at least one --publish or --subscribe pattern.")
    settings = app_state().settings
    click.echo(standalone.mint_with(settings, private_key, subject, publish, subscribe, ttl))


@group.command("publish", epilog=standalone.EXIT_CODES_HELP)
@standalone.event_arguments
@click.option(
    "--idempotency-key",
    default=None,
    help="Reuse one across runs to publish at most once.",
)
@click.option(
    "--publisher",
    default=None,
    help="Publish as this name: rate limited and keyed as a token with this sub.",
)
def publish(
    topic: str,
    data: str,
    event_type: str | None,
    as_json: bool,
    idempotency_key: str | None,
    publisher: str | None,
) -> None:
    """Store DATA on TOPIC through this app's own storage and print the event's id.

    No server needs to run and no token is needed: this is the app's own code publishing, as
    ``rt.publish`` in a view does. DATA - reads standard input.
    """
    value = standalone.read_data(data, as_json)
    try:
        event_id = app_state().publisher.publish(
            topic,
            value,
            type=event_type,
            idempotency_key=idempotency_key,
            publisher=publisher,
        )
    except ClientError as exc:
        raise refused(exc) from None
    click.echo(event_id)


@group.command("listen", epilog=standalone.EXIT_CODES_HELP)
@click.argument("topics", nargs=-1, required=True, metavar="TOPIC...")
@click.option(
    "--url",
    envvar="REALTIME_URL",
    default=None,
    help="The running server's base URL  [default: http://127.0.0.1:8000 and the app's prefix]",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--last-id", default=None, help="Resume after this event id.")
@click.option("-v", "--verbose", is_flag=True, help="Report retries and reconnects on stderr.")
@click.pass_context
def listen(
    ctx: click.Context,
    topics: tuple[str, ...],
    url: str | None,
    as_json: bool,
    last_id: str | None,
    verbose: bool,
) -> None:
    """Print the events of TOPIC... from a running server of this app, until Ctrl-C.

    It mints a short-lived token for the topics with the app's key and then behaves exactly as
    ``realtime listen`` (the same lines, resumes and exit codes).
    """
    rt = app_state()
    base = url or DEFAULT_URL.rstrip("/") + (rt.url_prefix or "") + "/"
    minted = standalone.mint_with(rt.settings, None, "flask-realtime-listen", (), topics, 12 * 3600)
    options: dict[str, Any] = {"as_json": as_json, "last_id": last_id, "verbose": verbose}
    ctx.invoke(
        standalone.listen,
        topics=topics,
        url=base,
        token=minted,
        timeout=45.0,
        max_backoff=30.0,
        **options,
    )
