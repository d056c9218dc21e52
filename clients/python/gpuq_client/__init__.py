"""A thin Python client for gpuq: enqueue jobs with numpy arrays as tensors,
wait for their results. It speaks the protocol (docs/protocol.md) over
redis-py and msgpack; there is nothing of gpuq's own in it.

    from gpuq_client import Client
    gq = Client("redis://127.0.0.1:6379")
    res = gq.run("mlp", {"x": np.random.rand(4, 256).astype(np.float32)}, model="encoder")
    y = res.outputs["y"]

AsyncClient is the same over redis.asyncio, for FastAPI and other event loops.
"""
import os
import uuid

import msgpack
import numpy as np

__all__ = ["Client", "AsyncClient", "Result", "GpuqError", "to_tensor", "from_tensor"]

_DTYPES = {"f32": "<f4", "f16": "<f2", "f64": "<f8", "i8": "i1", "u8": "u1", "i32": "<i4", "i64": "<i8"}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def to_tensor(a):
    """A numpy array as a protocol tensor (C order, little-endian)."""
    a = np.ascontiguousarray(a)
    name = _NAMES.get(a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype)
    if name is None:
        raise TypeError(f"gpuq has no dtype for {a.dtype}")
    return {"dtype": name, "shape": list(a.shape), "data": a.astype(_DTYPES[name], copy=False).tobytes()}


def from_tensor(t):
    return np.frombuffer(t["data"], dtype=_DTYPES[t["dtype"]]).reshape(t["shape"])


class GpuqError(Exception):
    """An error result: code is one of the protocol's error codes."""

    def __init__(self, code, message, result=None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.result = code, message, result


class Result:
    def __init__(self, raw):
        self.raw = raw
        self.id = raw.get("id")
        self.status = raw.get("status")
        self.outputs = {k: from_tensor(v) for k, v in (raw.get("outputs") or {}).items()}
        self.error = raw.get("error")
        self.meta = raw.get("meta")
        self.timing = raw.get("timing") or {}
        self.worker = raw.get("worker")

    @property
    def ok(self):
        return self.status == "ok"

    def raise_for_error(self):
        if not self.ok:
            raise GpuqError(self.error["code"], self.error["message"], self)
        return self


class _Base:
    def __init__(self, prefix="gpuq", queue="default"):
        self.prefix, self.queue = prefix, queue

    def key(self, suffix, queue=None):
        return f"{self.prefix}:{{{queue or self.queue}}}:{suffix}"

    def _job(self, op, inputs, queue, model=None, params=None, id=None, reply_to=None, callback=None,
             priority=None, timeout_ms=None, deadline_ms=None, result_ttl=None, meta=None):
        job = {"op": op, "inputs": {k: to_tensor(v) for k, v in inputs.items()}}
        for k, v in (("model", model), ("params", params), ("id", id), ("reply_to", reply_to),
                     ("callback", callback), ("priority", priority), ("timeout_ms", timeout_ms),
                     ("deadline_ms", deadline_ms), ("result_ttl", result_ttl), ("meta", meta)):
            if v is not None:
                job[k] = v
        return msgpack.packb(job, use_bin_type=True)

    def _reply_key(self, queue):
        return self.key(f"reply:{os.getpid()}:{uuid.uuid4().hex}", queue)


class Client(_Base):
    """Blocking client over redis-py."""

    def __init__(self, url="redis://127.0.0.1:6379", prefix="gpuq", queue="default", redis_client=None):
        import redis
        super().__init__(prefix, queue)
        self.r = redis_client or redis.Redis.from_url(url)

    def enqueue(self, op, inputs, queue=None, **kw):
        """Puts one job on the queue; returns its stream entry id."""
        return self.r.xadd(self.key("jobs", queue), {"job": self._job(op, inputs, queue, **kw)}).decode()

    def wait(self, reply_to, timeout=30):
        """The next result on reply_to; TimeoutError after timeout seconds."""
        item = self.r.blpop([reply_to], timeout=timeout)
        if item is None:
            raise TimeoutError(f"no result on {reply_to} within {timeout} s")
        return Result(msgpack.unpackb(item[1], raw=False))

    def run(self, op, inputs, timeout=30, queue=None, **kw):
        """Enqueues a job with its own reply list and waits for its result."""
        reply = self._reply_key(queue)
        self.enqueue(op, inputs, queue=queue, reply_to=reply, **kw)
        try:
            return self.wait(reply, timeout)
        finally:
            self.r.delete(reply)

    def result(self, job_id, queue=None):
        """The stored result of job_id, or None."""
        raw = self.r.get(self.key(f"result:{job_id}", queue))
        return None if raw is None else Result(msgpack.unpackb(raw, raw=False))


class AsyncClient(_Base):
    """The same over redis.asyncio: waiting never blocks the event loop."""

    def __init__(self, url="redis://127.0.0.1:6379", prefix="gpuq", queue="default", redis_client=None):
        import redis.asyncio
        super().__init__(prefix, queue)
        self.r = redis_client or redis.asyncio.Redis.from_url(url)

    async def enqueue(self, op, inputs, queue=None, **kw):
        return (await self.r.xadd(self.key("jobs", queue), {"job": self._job(op, inputs, queue, **kw)})).decode()

    async def wait(self, reply_to, timeout=30):
        item = await self.r.blpop([reply_to], timeout=timeout)
        if item is None:
            raise TimeoutError(f"no result on {reply_to} within {timeout} s")
        return Result(msgpack.unpackb(item[1], raw=False))

    async def run(self, op, inputs, timeout=30, queue=None, **kw):
        reply = self._reply_key(queue)
        await self.enqueue(op, inputs, queue=queue, reply_to=reply, **kw)
        try:
            return await self.wait(reply, timeout)
        finally:
            await self.r.delete(reply)

    async def close(self):
        await self.r.close()
