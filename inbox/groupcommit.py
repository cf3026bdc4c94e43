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

Other per-request writes can ride along (``commands``): the hourly webhook counters
(``inbox.traffic``), written after each answer, join the next batch instead of costing each
webhook a round trip of its own; being best effort, they do not wait for their reply when a
batch is already under way (the caller that sends that batch sends them).
"""

import os
import threading

import hiredis
import redis


class _Call:
    __slots__ = ("keys", "args", "build", "wait", "done", "lead", "reply", "error")

    def __init__(self, keys, args, build=None, wait=True):
        self.keys = keys
        self.args = args
        #: for ``commands``: queues the caller's commands on the batch's pipeline
        self.build = build
        #: False when nobody waits for the reply (``commands(..., wait=False)``)
        self.wait = wait
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
        self._own_connection = None
        self._connection_pid = None
        #: calls sent and round trips made, for the benchmark's batch size
        self.calls = 0
        self.round_trips = 0

    def __call__(self, keys, args):
        """The script's reply for ``keys``/``args``; raises what the call alone would raise."""
        return self._submit(_Call(keys, args))

    def commands(self, build, wait=True):
        """The replies of the commands ``build(pipeline)`` queues, sent in the next batch.

        Raises the first error among them, as a pipeline of their own would. With
        ``wait=False`` (best-effort writes such as counters) a batch already under way takes
        the commands along and this returns None at once, without their replies or errors;
        with no batch under way the caller sends them itself, as with ``wait=True``.
        """
        return self._submit(_Call(None, None, build, wait))

    def _submit(self, call):
        with self._lock:
            if self._busy:
                self._queue.append(call)
                if not call.wait:
                    return None
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
        while call is not None:
            call = self._lead_once(call)

    def _lead_once(self, call):
        """Send ``call`` and the queue; the call that leads next when nobody waits for one
        (queued calls whose callers did not wait: this caller sends them too), else None."""
        with self._lock:
            batch, self._queue = [call, *self._queue], []
        outage = None
        carry_on, sent = None, False
        try:
            outage = self._send(batch)
            sent = True
        finally:
            with self._lock:
                # Redis did not answer: the calls that queued meanwhile fail with the same error
                # now, instead of each batch waiting out the timeouts again (a webhook answers
                # 503 within one round trip's timeouts, as it would alone)
                failed, self._queue = (self._queue, []) if outage else ([], self._queue)
                successor = next((other for other in self._queue if other.wait), None)
                if successor is not None:
                    self._queue.remove(successor)
                elif self._queue and sent:  # (when interrupted, the next caller takes them)
                    carry_on = self._queue.pop(0)
                else:
                    self._busy = False
            for other in failed:
                other.error = outage
                other.done.set()
            for other in batch:
                if other.reply is None and other.error is None:  # the leader was interrupted
                    other.error = redis.ConnectionError("The call's batch was not sent.")
                if other is not call:
                    other.done.set()
            if successor is not None:
                successor.lead = True
                successor.done.set()
        return carry_on

    def _send(self, batch):
        """One round trip for ``batch``; each call gets its reply, or the error it alone raised.

        Returns the error when the round trip itself failed because Redis did not answer.
        """
        # a pipeline only as the collector of the commands (the ``commands`` builders write to
        # one); they are sent by ``_exchange``
        pipe = self.client.pipeline(transaction=False)
        spans = []
        for call in batch:
            start = len(pipe)
            if call.build is None:
                pipe.evalsha(self.script.sha, len(call.keys), *call.keys, *call.args)
            else:
                try:
                    call.build(pipe)
                except Exception as exc:  # a caller's own mistake stays its own
                    del pipe.command_stack[start:]
                    call.error = exc
            spans.append((start, len(pipe)))
        try:
            replies = self._exchange(pipe.command_stack) if len(pipe) else []
        except Exception as exc:  # the round trip failed for every call in it
            for call in batch:
                call.error = call.error or exc
            self._count(batch)
            return _outage(exc)
        for call, (start, end) in zip(batch, spans):
            if call.error is not None:
                continue
            if call.build is not None:
                call.reply = replies[start:end]
                call.error = next((r for r in call.reply if isinstance(r, Exception)), None)
                continue
            reply = replies[start]
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

    def _exchange(self, command_stack):
        """Send the commands of ``command_stack`` and read every reply (an error reply as its
        exception, in its place), on this group commit's own connection.

        The same exchange as ``pipeline.execute(raise_on_error=False)``, with the client's own
        retry policy, minus what a pipeline does per call (checking a connection out of the pool
        and back, retry and event bookkeeping), which cost more CPU than the whole round trip
        on the socket (bench/RESULTS.md). Only the leader sends, one batch at a time, so one
        connection per process is enough.
        """
        connection = self._connection()
        # hiredis (a dependency) writes the protocol in C, as redis-py would after copying and
        # re-checking every argument of every command
        packed = [b"".join([hiredis.pack_command(args) for args, _ in command_stack])]
        callbacks = self.client.response_callbacks

        def attempt():
            connection.send_packed_command(packed)
            replies = []
            try:
                for args, options in command_stack:
                    try:
                        reply = connection.read_response()
                    except redis.ResponseError as exc:
                        replies.append(exc)
                        continue
                    callback = callbacks.get(args[0])
                    replies.append(callback(reply, **options) if callback else reply)
            except BaseException:
                # replies left unread would answer the next batch's commands: start afresh
                connection.disconnect()
                raise
            return replies

        return connection.retry.call_with_retry(attempt, lambda error: connection.disconnect())

    def _connection(self):
        """This process's connection, made by the client's pool (server, credentials, timeouts
        and retries as configured there); a new one after a fork."""
        if self._connection_pid != os.getpid():
            self._own_connection = self.client.connection_pool.make_connection()
            self._connection_pid = os.getpid()
        return self._own_connection

    def _count(self, batch):
        self.calls += len(batch)
        self.round_trips += 1


def _outage(error):
    """``error`` when it means Redis did not answer (connection lost, timed out), else None."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return error
    return None
