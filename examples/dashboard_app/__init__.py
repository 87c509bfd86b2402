"""A small Flask app with its own login (flask-login) that embeds realtime under ``/rt``.

Each signed-in user has a page that follows their own topic, ``user:<name>``, over a plain
``EventSource`` (``realtime.js``) that carries no token: the session cookie does, and
``@rt.authorize`` turns the signed-in user into the topics they may follow and publish to. A
form on the page posts a note; the view stores it with ``rt.publish`` and every page of that user
shows it at once. ``README.md`` beside this file walks through it.

Run it (from the repository root, after ``make run`` once created ``.venv``)::

    .venv/bin/pip install flask-login
    .venv/bin/flask --app examples/dashboard_app run           # the development server, or
    .venv/bin/gunicorn -c python:realtime.gunicorn_conf --pythonpath examples \
        'dashboard_app:create_app()'

Then sign in as ``alice`` or ``bob`` (password: the name backwards, a demo).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from typing import Any

from flask import Flask, Request, redirect, render_template, request, url_for
from flask_login import (  # type: ignore[import-untyped]
    LoginManager,
    UserMixin,
    current_user,
    login_required,
    login_user,
    logout_user,
)
from werkzeug.wrappers import Response

from realtime import Access, Realtime

#: The demo's users and their passwords. A real app has its own user store.
USERS = {"alice": "ecila", "bob": "bob"[::-1]}


@dataclass
class User(UserMixin):  # type: ignore[misc]
    id: str

    @property
    def topic(self) -> str:
        return f"user:{self.id}"


login_manager = LoginManager()
login_manager.login_view = "login"
rt = Realtime()


@login_manager.user_loader  # type: ignore[untyped-decorator]
def load_user(user_id: str) -> User | None:
    return User(user_id) if user_id in USERS else None


@rt.authorize
def realtime_access(_request: Request) -> Access | None:
    """A signed-in user may follow and publish to their own topic, and no other; a visitor,
    nothing (realtime answers 401). Requests with a token never get here."""
    if not current_user.is_authenticated:
        return None
    topic = current_user.topic
    return Access(subscribe=[topic], publish=[topic], subject=current_user.id)


def create_app(config: dict[str, Any] | None = None) -> Flask:
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=os.environ.get("DASHBOARD_SECRET_KEY") or secrets.token_hex(32),
        SESSION_COOKIE_SAMESITE="Lax",
    )
    app.config.update(config or {})
    login_manager.init_app(app)
    rt.init_app(app, url_prefix="/rt")

    @app.get("/")
    @login_required  # type: ignore[untyped-decorator]
    def home() -> str:
        return render_template("home.html", user=current_user)

    @app.post("/notes")
    @login_required  # type: ignore[untyped-decorator]
    def add_note() -> Response:
        """Publish the note to the user's own topic from the view: no HTTP, no token."""
        text = request.form.get("text", "").strip()
        if text:
            rt.publish(current_user.topic, {"text": text}, type="note")
        return redirect(url_for("home"))

    @app.route("/login", methods=["GET", "POST"])
    def login() -> str | Response:
        error = None
        if request.method == "POST":
            name = request.form.get("name", "")
            if USERS.get(name) == request.form.get("password"):
                login_user(User(name))
                return redirect(url_for("home"))
            error = "Unknown name or wrong password."
        return render_template("login.html", error=error)

    @app.post("/logout")
    def logout() -> Response:
        logout_user()
        return redirect(url_for("login"))

    return app
