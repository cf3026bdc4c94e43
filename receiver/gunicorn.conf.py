"""gunicorn settings of the receiver: ``metriport-inbox serve`` and the Procfile's ``web`` line.

Measured on 2 shared cores (bench/ingest.py, bench/RESULTS.md): gthread with one process
per core; 8 threads each let the Redis round trips of a webhook overlap (more webhooks per second
and a lower p99 at half load than 4 threads; more processes than cores only added contention).
Each value can be overridden from the environment or the command line (``--bind``,
``--workers`` ...), which gunicorn applies last.
"""

import os
import shutil
import tempfile

from inbox import logs

# prometheus_client picks its multiprocess mode when it is first imported, which preload_app
# does in this master before any worker forks: the directory must be known by then. Each
# worker writes its counters and histograms to files there; /metrics sums them.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metriport-inbox-metrics-")

#: HOST and PORT from the environment; loopback unless told otherwise (platforms that route
#: traffic to $PORT set HOST=0.0.0.0, as the Procfile does)
bind = os.environ.get("HOST", "127.0.0.1") + ":" + os.environ.get("PORT", "8000")
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Build the app once in the master: a configuration error stops the start at once instead of
# crash-looping workers. Redis clients connect lazily, after the fork.
preload_app = True
# Metriport waits 4 s; the request budget is enforced by Redis timeouts in the app. gunicorn's
# timeout only catches a frozen worker, and shutdown fits in a platform's 30 s SIGTERM grace.
timeout = 20
graceful_timeout = 20
keepalive = 5
# A heartbeat file on tmpfs never stalls on a slow disk (gunicorn FAQ).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# gunicorn 27's control socket has one default path per user: several servers on a host (or a
# server and its tests) would fight over it, and nothing here uses it.
control_socket_disable = True
# receiver.requestlog writes one JSON line per request; gunicorn's access log would repeat it.
# gunicorn's error log goes through the project's one logging configuration (JSON lines).
accesslog = None
errorlog = "-"
loglevel = "info"
logconfig_dict = logs.config()


def on_starting(server):
    """Start with no counters left by an earlier server that used the same metrics directory."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker):
    """A dead worker's live gauges stop counting (its counters and histograms stay summed)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):
    """Remove the metrics directory this config made (one given in the environment stays)."""
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.path.basename(directory).startswith("metriport-inbox-metrics-"):
        shutil.rmtree(directory, ignore_errors=True)
