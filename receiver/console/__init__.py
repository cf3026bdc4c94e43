"""The operator console at ``/console``: health, webhooks, runs, feed lag, jobs, message history.

Server-rendered Jinja templates (autoescaped) and inline SVG charts: no script, no build step, no
third-party asset, so the Content-Security-Policy can forbid every script and every origin but
this one. Operators log in with a key of ``INBOX_OPERATOR_KEYS`` (``receiver.console.session``);
every POST carries a CSRF token. Pages show ids, times, statuses, channels and counts, never
message content: nothing here opens a stored resource.
"""

from flask import Blueprint

from receiver.console import session

#: scripts are forbidden outright; styles and images only from this origin; no framing
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

bp = Blueprint(
    "console", __name__, url_prefix="/console",
    template_folder="templates", static_folder="static", static_url_path="/static",
)


@bp.after_request
def _headers(response):
    """Strict headers on every console answer, pages and static files alike."""
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


bp.before_request(session.check_csrf)
bp.context_processor(lambda: {"csrf_token": session.csrf_token})
bp.add_url_rule("/login", "login", session.login, methods=["GET", "POST"])
bp.add_url_rule("/logout", "logout", session.logout, methods=["POST"])

from receiver.console import pages  # noqa: E402,F401  (the page views register on bp)


def init_app(app):
    session.init_app(app)
    app.register_blueprint(bp)
