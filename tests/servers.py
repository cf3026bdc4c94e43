"""Real server processes for tests: started, waited for, and always stopped by pid."""

import contextlib
import pathlib
import subprocess
import sys
import threading

from werkzeug.serving import make_server

from cli.dev import processes

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "receiver" / "gunicorn.conf.py"


def gunicorn_argv(app="receiver:create_app()"):
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), app]


@contextlib.contextmanager
def running(argv, env, port, log_path):
    """Run ``argv``, output to ``log_path``, until the block ends; SIGTERM then SIGKILL by pid."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            processes.wait_http_ok(port, process)
            yield process
        finally:
            processes.stop(process, grace=15)


@contextlib.contextmanager
def serving(app):
    """``app`` on a real threaded WSGI server on 127.0.0.1: its webhook URL until the block ends."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}/webhook"
    finally:
        server.shutdown()
        server.server_close()
