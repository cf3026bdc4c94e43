"""gunicorn settings of the receiver: ``metriport-inbox serve`` and the Procfile's ``web`` line.

Worker model: gevent, one process per core, each holding up to ``worker_connections`` open
connections as greenlets. Chosen on two measurements together (bench/RESULTS.md):

- slow clients: with gthread (2 x 8 threads) 16 connections trickling a body one byte per second
  held every thread and signed pings timed out; under gevent a trickling connection only holds
  a greenlet, and 48 of them leave pings answered in milliseconds (tests/test_slow_clients.py);
- throughput: gevent ingests at least as fast as gthread on 2 cores (bench/ingest.py).

Everything the receiver waits on is a socket that gevent's monkey-patching makes cooperative:
redis-py's connections (hiredis only parses bytes that the patched socket has read), RQ's
enqueue (the same redis-py), and gunicorn's own client sockets. The patch is applied here, when
gunicorn reads this file in the master, before ``preload_app`` imports the app: every module,
lock and socket class is then the cooperative one (patching later, in the worker, leaves locks
made at import time as real thread locks and makes gevent warn about ``ssl``).
``GUNICORN_WORKER_CLASS=gthread`` (with ``GUNICORN_THREADS``) goes back to threads, unpatched.
Each value can be overridden from the environment or the command line (``--bind``,
``--workers`` ...), which gunicorn applies last.
"""

import os
import shutil
import sys
import tempfile

from inbox.errors import InboxError

# prometheus_client picks its multiprocess mode when it is first imported, which preload_app
# does in this master before any worker forks: the directory must be known by then. Each
# worker writes its counters and histograms to files there; /metrics sums them.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="metriport-inbox-metrics-")

worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "gevent")
if worker_class == "gevent":
    from gevent import monkey

    monkey.patch_all()

from gunicorn import glogging  # noqa: E402  (after the patch, like everything the app imports)

from inbox import logs  # noqa: E402

#: HOST and PORT from the environment; loopback unless told otherwise (platforms that route
#: traffic to $PORT set HOST=0.0.0.0, as the Procfile does)
bind = os.environ.get("HOST", "127.0.0.1") + ":" + os.environ.get("PORT", "8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
#: open connections per worker, idle or trickling ones included; past it a worker stops
#: accepting (see docs/webhook.md for what a deployment in front provides beyond that)
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
#: threads per worker under gthread only
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


class _Logger(glogging.Logger):
    """gunicorn's logger without its access line.

    With ``logconfig_dict`` set gunicorn turns its access log on whatever ``accesslog`` says, and
    builds every access line's fields: a second line per request repeating receiver.requestlog's,
    and about 5% of a webhook's time in the worker (bench/profiles/ingest.txt).
    """

    access_log_enabled = False


logger_class = _Logger


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


def _one_line(exc_type, exc, tb):
    """A deliberate error while the master builds the app (a missing webhook key, a malformed
    setting, a cluster that does not answer) ends the start with one sentence, like every
    ``metriport-inbox`` command, instead of gunicorn's traceback; anything else is a bug and keeps
    its traceback. Either way the exit status is 1."""
    if isinstance(exc, InboxError):
        print(f"error: {exc.code}: {exc.detail}", file=sys.stderr)
    else:
        sys.__excepthook__(exc_type, exc, tb)


sys.excepthook = _one_line
