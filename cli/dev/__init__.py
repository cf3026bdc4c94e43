"""Development tooling: private redis-servers and clusters, and the child processes we start.

Used by ``metriport-inbox demo`` and ``simulate``, the tests and the benches; never by the
receiver or the worker, which only connect to a Redis they are given.
"""
