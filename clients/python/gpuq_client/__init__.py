"""A thin Python client for gpuq: enqueue jobs with numpy arrays as tensors,
wait for their results. It speaks the protocol (docs/protocol.md) over
redis-py and msgpack; there is nothing of gpuq's own in it.

    from gpuq_client import Client
    gq = Client("redis://127.0.0.1:6379")
    res = gq.run("mlp", {"x": np.random.rand(4, 256).astype(np.float32)}, model="encoder")
    y = res.outputs["y"]

run() raises GpuqError on an error result and GpuqTimeoutError (a TimeoutError)
when no result comes in time. AsyncClient is the same over redis.asyncio, for
FastAPI and other event loops. Each client waits through one reply list and
one reader connection per queue, however many calls wait at once.
"""
from ._async import AsyncClient
from ._client import Client
from ._protocol import GpuqError, GpuqTimeoutError, Result, decode_result, from_tensor, to_tensor

__version__ = "0.1.0"
__all__ = ["Client", "AsyncClient", "Result", "GpuqError", "GpuqTimeoutError", "to_tensor", "from_tensor",
           "decode_result"]
