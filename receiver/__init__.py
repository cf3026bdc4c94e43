"""The receiver: a Flask app that takes Metriport's webhooks and serves downstream apps.

``create_app()`` builds the app from the settings and its shared ``Resources``
(``receiver.resources``); each module of this package that serves routes has one blueprint,
registered by its ``init_app(app)``, wired here in order. gunicorn calls
``receiver:create_app()`` (see ``receiver/gunicorn.conf.py``).
"""

from flask import Flask

from inbox.settings import Settings
from receiver import console
from receiver import errors
from receiver import feed_api
from receiver import health
from receiver import metrics
from receiver import mirror
from receiver import openapi
from receiver import requestlog
from receiver import webhook
from receiver.resources import EXTENSION
from receiver.resources import Resources


def create_app(settings=None):
    """The WSGI app for ``settings`` (default: read from the environment once)."""
    settings = settings or Settings.from_env()
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.webhook_max_bytes
    # One set of lazily-connected clients per process; redis-py reconnects after gunicorn forks.
    app.extensions[EXTENSION] = Resources.build(settings)
    errors.init_app(app)
    requestlog.init_app(app)
    webhook.init_app(app)
    health.init_app(app)
    mirror.init_app(app)
    feed_api.init_app(app)
    metrics.init_app(app)
    openapi.init_app(app)
    console.init_app(app)
    return app
