"""``GET /openapi.json``: the OpenAPI 3.1 description of every route, shipped in the package.

The document is a static file (``receiver/openapi.json``) so that it can be reviewed and diffed;
``tests/test_openapi.py`` validates real responses of every route against it.
"""

import importlib.resources
import json

from flask import Blueprint
from flask import jsonify

from receiver.resources import resources

bp = Blueprint("openapi", __name__)


def load():
    """The OpenAPI document as a dict."""
    return json.loads(importlib.resources.files("receiver").joinpath("openapi.json").read_text())


@bp.get("/openapi.json")
def openapi():
    return jsonify(resources().openapi)


def init_app(app):
    resources(app).openapi = load()
    app.register_blueprint(bp)
