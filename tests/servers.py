"""Real server processes for tests: started, waited for, and always stopped by pid."""

import contextlib
import http.client
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
GUNICORN_CONF = ROOT / "receiver" / "gunicorn.conf.py"


def gunicorn_argv(app="receiver:create_app()"):
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONF), app]


def wait_healthy(port, process, timeout=30.0):
    """Poll GET /healthz until it answers 200; fail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
        finally:
            conn.close()
    raise RuntimeError(f"server on port {port} did not become healthy in {timeout} s")


@contextlib.contextmanager
def running(argv, env, port, log_path):
    """Run ``argv``, output to ``log_path``, until the block ends; SIGTERM then SIGKILL by pid."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(port, process)
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
