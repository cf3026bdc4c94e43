"""The receiver plus two baselines for bench/ingest.py only.

``POST /noop`` reads the body and answers; ``POST /noop-redis`` also makes one Redis round trip
(a PING on the store's client), the floor of any webhook that stores before it answers. Both
run in the same app, so they pay the same framework, logging and gunicorn costs as ``/webhook``.
"""

from flask import current_app
from flask import request

import receiver


def create_app():
    app = receiver.create_app()

    @app.post("/noop")
    def noop():
        request.get_data()
        return {"ok": True}

    @app.post("/noop-redis")
    def noop_redis():
        request.get_data()
        current_app.extensions["inbox"]["store"].ping()
        return {"ok": True}

    return app
