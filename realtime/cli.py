"""The ``realtime`` command line: ``realtime token`` mints JWTs for cron jobs and services.

It reads the same ``REALTIME_*`` variables as the server and never connects to Redis, so it
works wherever the key is available. Exit codes: 0 ok, 2 usage or configuration error.
"""

from __future__ import annotations

import os
import secrets
import sys

import click

from .auth import mint_token, parse_duration
from .config import load_settings
from .devsecret import dev_secret_path
from .errors import ConfigError


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> int | None:
    if value.lower() in ("never", "none", "0"):
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="realtime")
def main() -> None:
    """realtime: SSE-first notifications for Flask."""


@main.command()
@click.option("--sub", "subject", default=None, help="The token's subject (who it is for).")
@click.option(
    "--publish",
    "publish",
    multiple=True,
    metavar="PATTERN",
    help="A topic or glob the token may publish to; repeatable.",
)
@click.option(
    "--subscribe",
    "subscribe",
    multiple=True,
    metavar="PATTERN",
    help="A topic or glob the token may subscribe to; repeatable.",
)
@click.option(
    "--ttl",
    default="1h",
    show_default=True,
    callback=_duration,
    help="Lifetime: 90s, 15m, 12h, 30d, 2w, or 'never'.",
)
@click.option(
    "--private-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM private key for RS256/ES256 (the server holds the public half).",
)
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
        minted = mint_token(
            secret=secret,
            private_key=pem,
            subject=subject,
            subscribe=subscribe,
            publish=publish,
            ttl_s=ttl,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(minted)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
