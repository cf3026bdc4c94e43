"""The baseline of bench/ingest.py: a no-op Flask POST, served apart under gunicorn gthread 2 x 4.

It reads the body and answers a small JSON object: what a webhook costs in Flask and gunicorn
before any verification, parsing or storing. It shares nothing with the receiver (own process,
own app, gunicorn's defaults plus the worker model), so the ratio compares the receiver with the
few lines anyone would start from.
"""

from flask import Flask
from flask import request

app = Flask(__name__)


@app.post("/webhook")
def noop():
    request.get_data()
    return {"ok": True}
