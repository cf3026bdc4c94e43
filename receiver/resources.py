"""What the receiver's routes share within one process, as one typed object.

``create_app`` builds a ``Resources`` once per app (Redis clients connect lazily, so this is safe
before gunicorn forks) and each route module reads it with ``resources()``; a module that needs
something of its own (the fetch queue, the readiness client, the metrics registry) builds it in
its ``init_app`` and sets its field here, so every shared thing has a declared name and type.
"""

import dataclasses

from flask import current_app

from inbox.connection import Connections
from inbox.feed import Feed
from inbox.rediskeys import RedisKeys
from inbox.settings import Settings
from inbox.store import Store

#: the key of ``app.extensions`` under which the resources live
EXTENSION = "inbox"


@dataclasses.dataclass
class Resources:
    """The settings, clients and per-process objects of one receiver app."""

    settings: Settings
    connections: Connections
    #: the store webhooks write through (group commit shares round trips between requests)
    store: Store
    feed: Feed
    redis_keys: RedisKeys
    #: RQ queue of the worker's fetch jobs (``receiver.webhook``)
    fetch_queue: object = None
    #: webhook answers per hour, for the console's charts (``receiver.webhook``)
    traffic: object = None
    #: a store on a short-timeout client of its own, for ``/readyz`` (``receiver.health``)
    readiness_store: Store | None = None
    readiness_client: object = None
    #: the Prometheus registry ``/metrics`` renders (``receiver.metrics``)
    metrics_registry: object = None
    #: the OpenAPI document ``/openapi.json`` serves (``receiver.openapi``)
    openapi: dict | None = None

    @classmethod
    def build(cls, settings):
        """Resources for ``settings``; no I/O (clients connect on first use)."""
        connections = Connections(settings)
        return cls(
            settings=settings,
            connections=connections,
            store=Store(settings, client=connections.store, group_commit=True),
            feed=Feed(settings, client=connections.store),
            redis_keys=RedisKeys(settings.namespace),
        )


def resources(app=None):
    """The ``Resources`` of ``app`` (default: the app handling the current request)."""
    return (app or current_app).extensions[EXTENSION]
