"""Console login: a signed, HttpOnly, SameSite=Strict session cookie, and CSRF on every POST.

The cookie is Flask's signed session, keyed by an HMAC of the operator keys: changing
``INBOX_OPERATOR_KEYS`` logs everyone out, and every gunicorn worker derives the same key without
sharing a secret. The session holds the operator key's fingerprint (never the key) and a CSRF
token; a session whose fingerprint no longer matches a configured key is logged out. Without
operator keys the console refuses every login.
"""

import functools
import hashlib
import hmac
import secrets
import time

from flask import redirect
from flask import render_template
from flask import request
from flask import session
from flask import url_for
from flask.sessions import SecureCookieSessionInterface

from inbox.crypto import fingerprint
from receiver import requestlog
from receiver.auth import key_accepted
from receiver.resources import resources

_SECRET_CONTEXT = b"metriport-inbox console session v1"
#: how long a login lasts
SESSION_SECONDS = 8 * 3600
COOKIE = "inbox_console"


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        return request.is_secure


def _operator_keys():
    return resources().settings.operator_keys


def csrf_token():
    """This session's CSRF token (made on first use); templates put it in every form."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def check_csrf():
    """Refuse a POST whose form token is missing or differs from the session's (403)."""
    if request.method != "POST":
        return None
    sent = request.form.get("csrf", "")
    expected = session.get("csrf", "")
    if not sent or not expected or not hmac.compare_digest(sent, expected):
        return refuse(403, "csrf_invalid", "The form's CSRF token is missing or stale: reload the page.")
    return None


def refuse(status, code, detail):
    requestlog.set_reason(code)
    return render_template("console/refused.html", code=code, detail=detail), status


def logged_in():
    """True when the session names a key that is still configured."""
    who = session.get("op")
    return bool(who) and any(hmac.compare_digest(who, fingerprint(k)) for k in _operator_keys())


def operator_required(view):
    """A console page: to the login form without a valid session (401 for a POST)."""

    @functools.wraps(view)
    def guarded(*args, **kwargs):
        if not logged_in():
            session.pop("op", None)
            if request.method == "POST":
                return refuse(401, "login_required", "Log in again.")
            return redirect(url_for("console.login"))
        return view(*args, **kwargs)

    return guarded


def login():
    """GET: the form; POST: check the key, start a fresh session, go to the overview."""
    if request.method == "GET":
        return render_template("console/login.html", page="login", configured=bool(_operator_keys()))
    keys = _operator_keys()
    if not keys:
        return refuse(401, "operator_keys_not_configured",
                      "This service has no INBOX_OPERATOR_KEYS, so the console admits nobody.")
    presented = request.form.get("key", "")
    if not presented or not key_accepted(presented, keys):
        time.sleep(0.2)  # slows guessing; keys are long random strings anyway
        return refuse(401, "operator_key_invalid", "That operator key is not accepted.")
    session.clear()
    session.permanent = True
    session["op"] = fingerprint(presented)
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect(url_for("console.overview"))


def logout():
    session.clear()
    return redirect(url_for("console.login"))


def _secret(keys):
    """The cookie signing key: an HMAC of the operator keys, or random when there are none."""
    if not keys:
        return secrets.token_bytes(32)
    return hmac.new(_SECRET_CONTEXT, "\n".join(sorted(keys)).encode(), hashlib.sha256).digest()


def init_app(app):
    app.secret_key = _secret(resources(app).settings.operator_keys)
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE,
        SESSION_COOKIE_PATH="/console",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        PERMANENT_SESSION_LIFETIME=SESSION_SECONDS,
    )
