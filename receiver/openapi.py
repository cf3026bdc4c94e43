"""``GET /openapi.json``: the OpenAPI 3.1 description of every route, shipped in the package.

The document is a static file (``receiver/openapi.json``) so that it can be reviewed and diffed;
``tests/test_openapi.py`` validates real responses of every route against it.
"""

import importlib.resources
import json

from flask import current_app
from flask import jsonify


def load():
    """The OpenAPI document as a dict."""
    return json.loads(importlib.resources.files("receiver").joinpath("openapi.json").read_text())


def openapi():
    return jsonify(current_app.extensions["inbox"]["openapi"])


def init_app(app):
    app.extensions["inbox"]["openapi"] = load()
    app.add_url_rule("/openapi.json", "openapi.openapi", openapi, methods=["GET"])
