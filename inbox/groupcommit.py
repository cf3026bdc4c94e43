"""Group commit: concurrent calls of one Lua script in one process share a Redis round trip.

The receiver stores each webhook with one script call. Under load a worker holds several
webhooks at once (greenlets under gevent, or threads), each waiting on its own round trip; the
socket writes, reads and redis-py's per-call work are then most of a webhook's cost. Here the
first caller to arrive sends its call and every call that queued up meanwhile in one pipeline
(no MULTI: each script call stays its own atomic unit, exactly as if sent alone), and each
caller gets its own reply or error back. Nothing waits for a batch to fill: a call alone is
sent at once, so the latency of a lone webhook is unchanged.

Every caller still returns only once Redis has answered its own call: a webhook is acknowledged
only after its record, ledger entry and feed entry are written.
"""

import threading

import redis


class _Call:
    __slots__ = ("keys", "args", "done", "lead", "reply", "error")

    def __init__(self, keys, args):
        self.keys = keys
        self.args = args
        self.done = threading.Event()
        self.lead = False
        self.reply = None
        self.error = None


class GroupCommit:
    """Calls of ``script`` (a redis-py ``Script``) on ``client``, batched across concurrent callers.

    One caller at a time leads: it sends the calls queued so far, hands the reply of each to
    its caller, then passes the lead to the oldest call that queued while it was sending.
    """

    def __init__(self, client, script):
        self.client = client
        self.script = script
        self._lock = threading.Lock()
        self._queue = []
        self._busy = False
        #: calls sent and round trips made, for the benchmark's batch size
        self.calls = 0
        self.round_trips = 0

    def __call__(self, keys, args):
        """The script's reply for ``keys``/``args``; raises what the call alone would raise."""
        call = _Call(keys, args)
        with self._lock:
            if self._busy:
                self._queue.append(call)
            else:
                self._busy = True
                call.lead = True
        if not call.lead:
            call.done.wait()
        if call.lead:
            self._lead(call)
        if call.error is not None:
            raise call.error
        return call.reply

    def _lead(self, call):
        with self._lock:
            batch, self._queue = [call, *self._queue], []
        try:
            self._send(batch)
        finally:
            with self._lock:
                successor = self._queue.pop(0) if self._queue else None
                if successor is None:
                    self._busy = False
            for other in batch:
                if other.reply is None and other.error is None:  # the leader was interrupted
                    other.error = redis.ConnectionError("The call's batch was not sent.")
                if other is not call:
                    other.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()

    def _send(self, batch):
        """One pipeline for ``batch``; each call gets its reply, or the error it alone raised."""
        if len(batch) == 1:
            only = batch[0]
            try:
                only.reply = self.script(keys=only.keys, args=only.args)
            except Exception as exc:  # handed to the caller, raised in its own frame
                only.error = exc
            self._count(batch)
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for call in batch:
                pipe.evalsha(self.script.sha, len(call.keys), *call.keys, *call.args)
            replies = pipe.execute(raise_on_error=False)
        except Exception as exc:  # the round trip failed for every call in it
            for call in batch:
                call.error = exc
            self._count(batch)
            return
        for call, reply in zip(batch, replies):
            if isinstance(reply, redis.exceptions.NoScriptError):
                # Redis lost the script (restart, SCRIPT FLUSH): the Script object loads it again
                try:
                    call.reply = self.script(keys=call.keys, args=call.args)
                except Exception as exc:
                    call.error = exc
            elif isinstance(reply, Exception):
                call.error = reply
            else:
                call.reply = reply
        self._count(batch)

    def _count(self, batch):
        self.calls += len(batch)
        self.round_trips += 1
