"""One deployment of the service as the docs describe it: its Redis servers, and the Procfile's
processes (``web``, ``worker``, ``clock``) started from the Procfile's own lines, as a platform
runs them (``sh -c <line>``), each stopped by pid with whatever it spawned.

Two topologies (docs/scaling.md):

- ``single``: one redis-server with AOF (appendfsync always) for the store, the feed and RQ;
- ``cluster``: a 3-master Redis Cluster for the store and the feed, RQ on its own redis-server.
"""

import contextlib
import os
import time
import uuid

import redis
import requests

import procfile
from chaos.harness import ROOT
from chaos.harness import wait_until
from cli.dev.embedded import EmbeddedCluster
from cli.dev.embedded import EmbeddedRedis
from cli.dev.embedded import free_port
from conftest import TEST_WEBHOOK_KEY
from inbox.settings import Settings
from inbox.store import Store

API_KEY = "system-api-key"
READER_KEY = "system-reader-key"


class Deployment:
    """The servers of one topology and the processes of one namespace on them."""

    def __init__(self, topology, processes, sim, **env):
        self.topology = topology
        self.processes = processes
        self.sim = sim
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.namespace = f"sys-{uuid.uuid4().hex[:8]}"
        self.extra_env = {name: str(value) for name, value in env.items()}
        self.running = {}
        self._stack = contextlib.ExitStack()
        if topology == "single":
            self.redis = self._stack.enter_context(EmbeddedRedis(appendonly=True))
            self.queue_redis = self.redis
            self.store_url = self.redis.url
            self.queue_url = None
        else:
            self.cluster = self._stack.enter_context(EmbeddedCluster(masters=3))
            self.queue_redis = self._stack.enter_context(EmbeddedRedis(appendonly=True))
            self.store_url = self.cluster.url
            self.queue_url = self.queue_redis.url
        self.settings = Settings(
            redis_url=self.store_url, rq_redis_url=self.queue_url, namespace=self.namespace,
            webhook_keys=(TEST_WEBHOOK_KEY,), inbox_api_keys=(READER_KEY,),
            api_url=sim.url, api_key=sim.api_key,
        )
        self.store = Store(self.settings)

    def close(self):
        self._stack.close()

    # -- the processes -------------------------------------------------------------------------

    def env(self, **extra):
        env = {
            "PATH": procfile.path(),
            "HOME": os.environ.get("HOME", "/tmp"),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": str(ROOT),
            "PORT": str(self.port),
            "WEB_CONCURRENCY": "1",
            "GUNICORN_THREADS": "4",
            "REDIS_URL": self.store_url,
            "INBOX_NAMESPACE": self.namespace,
            "METRIPORT_WEBHOOK_KEY": TEST_WEBHOOK_KEY,
            "INBOX_API_KEYS": READER_KEY,
            "METRIPORT_API_URL": self.sim.url,
            "METRIPORT_API_KEY": self.sim.api_key,
        }
        if self.queue_url:
            env["RQ_REDIS_URL"] = self.queue_url
        env.update(self.extra_env)
        env.update({name: str(value) for name, value in extra.items()})
        return env

    def start(self, *names, **extra):
        """Start Procfile processes ``names`` (all three by default); wait for ``web``'s /readyz."""
        for name in names or ("web", "worker", "clock"):
            generation = sum(p.name.startswith(name) for p in self.processes.started)
            self.running[name] = self.processes.start(
                f"{name}-{generation}", procfile.argv(name), self.env(**extra))
        if "web" in (names or ("web",)):
            web = self.running["web"]
            wait_until(lambda: self.ready() or not web.running, timeout=30, what="web /readyz")
            assert web.running, web.log()

    def stop(self, *names):
        """SIGTERM each (SIGKILL after the grace period); each must exit 0."""
        for name in names or tuple(self.running):
            process = self.running.pop(name)
            process.stop(grace=20)
            assert process.popen.returncode == 0, f"{name} exited {process.popen.returncode}"

    def restart(self, **extra):
        """A configuration change as operators deploy it: stop every process, start them again."""
        self.stop()
        self.start(**extra)

    def ready(self):
        try:
            return requests.get(self.url + "/readyz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    # -- the Redis servers ---------------------------------------------------------------------

    @property
    def store_server(self):
        """The redis-server holding this namespace (its one hash slot's master on a cluster)."""
        if self.topology == "single":
            return self.redis
        slot = redis.Redis(port=self.cluster.nodes[0].port).cluster("keyslot", "{%s}" % self.namespace)
        return _slot_owner(self.cluster, slot)

    def outage(self, seconds):
        """Stop every Redis server this namespace uses for ``seconds``, then start them again."""
        servers = [self.store_server] + ([self.queue_redis] if self.queue_url else [])
        for server in servers:
            server.stop()
        time.sleep(seconds)
        for server in servers:
            server.start()
        if self.topology == "cluster":
            self.cluster.wait_ok()

    @contextlib.contextmanager
    def full(self):
        """The store's server at maxmemory (noeviction) inside the block."""
        client = redis.Redis(port=self.store_server.port)
        client.config_set("maxmemory-policy", "noeviction")
        ballast = "{%s}:ballast" % self.namespace
        # Written in 64 KB pieces: a 1 MB SET leaves a 1 MB query buffer that Redis frees about
        # 2 s later (clientsCron), which dropped used memory back under the limit mid-block.
        for _ in range(32):
            client.append(ballast, b"x" * 65_536)
        client.config_set("maxmemory", client.info("memory")["used_memory"] - 1_000_000)
        try:
            yield
        finally:
            client.config_set("maxmemory", 0)
            client.delete(ballast)


def _slot_owner(cluster, slot):
    client = redis.Redis(port=cluster.nodes[0].port)
    for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
        if start <= slot <= end:
            port = master[1]
            return next(node for node in cluster.nodes if node.port == port)
    raise AssertionError(f"no master owns slot {slot}")
