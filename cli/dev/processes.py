"""Child processes this project starts (redis-server, gunicorn, RQ workers): stopped by pid.

The embedded Redis, the demo, the benchmarks and the tests all stop what they start the same
way: SIGTERM, a grace period for a clean shutdown, then SIGKILL, and always a wait so no zombie
is left. A process started in a session of its own (``start_new_session=True``) is stopped with
everything it spawned (gunicorn's workers, an RQ work horse) by ``stop_session``. They wait for an HTTP server the same way too: poll until it answers 200, failing fast
if the process died.
"""

import contextlib
import http.client
import os
import signal
import subprocess
import time


def stop(process, grace=10.0):
    """Stop ``process`` (a ``subprocess.Popen``): SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def stop_session(process, grace=10.0):
    """``stop`` a session leader, then SIGKILL whatever of its process group is left.

    gunicorn's master and an RQ worker stop their children on SIGTERM, but a SIGKILL after the
    grace period would orphan them: the group (same id as the leader) goes with it.
    """
    stop(process, grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def wait_http_ok(port, process, path="/healthz", timeout=30.0):
    """Poll ``GET http://127.0.0.1:<port><path>`` until it answers 200.

    Raises RuntimeError when ``process`` exits first or ``timeout`` seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before answering")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"127.0.0.1:{port}{path} did not answer 200 within {timeout} s")
