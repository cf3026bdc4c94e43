"""The receiver plus ``POST /noop`` (reads the body, answers), for bench/ingest.py only.

The no-op route runs in the same app, so it pays the same framework, logging and gunicorn
costs as ``/webhook``; the ratio of the two isolates the webhook's own work.
"""

from flask import request

import receiver


def create_app():
    app = receiver.create_app()

    @app.post("/noop")
    def noop():
        request.get_data()
        return {"ok": True}

    return app
