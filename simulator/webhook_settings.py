"""Metriport's webhook settings endpoints: the failed-delivery count and the retry request."""

from flask import Blueprint
from flask import Response

from simulator.answers import current
from simulator.answers import json_answer

bp = Blueprint("webhook_settings", __name__)


@bp.get("/settings/webhook")
def webhook_status():
    return json_answer(current().sender.status(), 200)


@bp.post("/settings/webhook/retry")
def webhook_retry():
    current().sender.retry_failed_async()
    return Response(status=200)
