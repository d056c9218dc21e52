"""The asyncio client, over redis.asyncio: waiting never blocks the event loop."""
from __future__ import annotations

import asyncio
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from ._client import DEFAULT_URL, Base, is_cluster, reader_pool, tls_options

# redis.asyncio's cluster client speaks TLS from redis-py 4.4 on; before, it
# drops the TLS settings and speaks plain TCP to a TLS port
ASYNC_CLUSTER_TLS = tuple(int(p) for p in redis.__version__.split(".")[:2] if p.isdigit()) >= (4, 4)
from ._protocol import (GpuqTimeoutError, Result, chunks_of, decode_result, embed_params, labelled, op_params,
                        ranking, rerank_inputs, sparse_rows)
from ._waiters import Waiters


class AsyncClient(Base):
    """The same as Client over redis.asyncio. Commands share a pool of at most
    max_connections connections; all waiting goes through one reply list and
    one reader connection per queue, however many run() calls wait at once.
    rediss:// and the ssl_* options as for Client."""

    def __init__(self, url: str = DEFAULT_URL, prefix: str = "gpuq", queue: str = "default",
                 redis_client: Any = None, max_connections: int = 16, cluster: bool = False, *,
                 ssl_ca_certs: Optional[str] = None, ssl_certfile: Optional[str] = None,
                 ssl_keyfile: Optional[str] = None):
        super().__init__(prefix, queue)
        tls = tls_options(url, ssl_ca_certs, ssl_certfile, ssl_keyfile)
        if cluster and not redis_client and tls and not ASYNC_CLUSTER_TLS:
            raise RuntimeError("AsyncClient(cluster=True) over rediss:// needs redis-py 4.4 or later "
                               f"(this is {redis.__version__}); Client(cluster=True) works")
        if cluster and not redis_client:
            redis_client = RedisCluster.from_url(url, max_connections=max_connections, **tls)
        self.r = redis_client or redis.asyncio.Redis(
            connection_pool=redis.asyncio.BlockingConnectionPool.from_url(url, max_connections=max_connections,
                                                                          **tls))
        self._readers: Dict[str, Tuple[Waiters, "asyncio.Task[None]"]] = {}

    async def enqueue(self, op: str, inputs: Mapping[str, Any], queue: Optional[str] = None,
                      **options: Any) -> str:
        """Puts one job on the queue; returns its stream entry id (options as Client.enqueue)."""
        return (await self.r.xadd(self.key("jobs", queue), {"job": self.job(op, inputs, **options)})).decode()

    async def wait(self, reply_to: str, timeout: float = 30) -> Result:
        """The next result on a reply list of your own (error or not);
        GpuqTimeoutError after timeout seconds. It holds a connection while it waits."""
        item = await self.r.blpop([reply_to], timeout=timeout)
        if item is None:
            raise GpuqTimeoutError(f"no result on {reply_to} within {timeout} s")
        return decode_result(item[1])

    async def run(self, op: str, inputs: Mapping[str, Any], timeout: float = 30, queue: Optional[str] = None,
                  **options: Any) -> Result:
        """Enqueues a job and waits for its result: GpuqError on an error result,
        GpuqTimeoutError when none comes within timeout seconds."""
        w = self._waiters_for(queue or self.queue)
        job_id = self.waited_job(w, options)
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        w.add(job_id, fut)
        try:
            await self.enqueue(op, inputs, queue=queue, **options)
            res = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise GpuqTimeoutError(f"no result for job {job_id} within {timeout} s") from None
        finally:
            w.discard(job_id, fut)
        return res.raise_for_error()

    async def embed(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
                    **options: Any) -> np.ndarray:
        """Sentence embeddings (as Client.embed)."""
        embed_params(options)
        res = await self.run("embed", {"text": texts if isinstance(texts, str) else list(texts)}, timeout=timeout,
                             model=model, **options)
        return res.outputs["y"][0] if isinstance(texts, str) else res.outputs["y"]

    async def embed_document(self, text: str, model: str, *, tokens: int, overlap: int = 0, timeout: float = 30,
                             **options: Any) -> List[Dict[str, Any]]:
        """A long text's windows and their embeddings (as Client.embed_document)."""
        embed_params(options)
        options.setdefault("params", {})["chunk"] = {"tokens": tokens, "overlap": overlap}
        return chunks_of(await self.run("embed", {"text": text}, timeout=timeout, model=model, **options), text)

    async def embed_sparse(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
                           **options: Any) -> Any:
        """SPLADE vectors (as Client.embed_sparse)."""
        op_params(options, ("top_k", "return_tokens", "max_length"))
        one = isinstance(texts, str)
        return sparse_rows(await self.run("embed_sparse", {"text": texts if one else list(texts)}, timeout=timeout,
                                          model=model, **options), one)

    async def rerank(self, query: str, documents: Sequence[str], model: str, *, timeout: float = 30,
                     **options: Any) -> List[Dict[str, Any]]:
        """The documents ranked against query (as Client.rerank)."""
        op_params(options, ("top_n", "raw_scores", "return_text", "max_length"))
        return ranking(await self.run("rerank", rerank_inputs(query, documents), timeout=timeout, model=model,
                                      **options))

    async def classify(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
                       **options: Any) -> Any:
        """Labels for each text (as Client.classify)."""
        op_params(options, ("top_k", "function", "max_length"))
        one = isinstance(texts, str)
        return labelled(await self.run("classify", {"text": texts if one else list(texts)}, timeout=timeout,
                                       model=model, **options), one)

    async def result(self, job_id: str, queue: Optional[str] = None) -> Optional[Result]:
        """The stored result of job_id (error or not), or None."""
        raw = await self.r.get(self.key(f"result:{job_id}", queue))
        return None if raw is None else decode_result(raw)

    async def close(self) -> None:
        """Stops the readers, deletes the client's reply lists, closes its connections."""
        for w, task in self._readers.values():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await self.r.delete(w.key)
        self._readers.clear()
        await self.r.close()
        if not is_cluster(self.r):
            await self.r.connection_pool.disconnect()

    def _waiters_for(self, queue: str) -> Waiters:
        w, task = self._readers.get(queue) or (None, None)
        if w is None:
            w = Waiters(Waiters.reply_key(self.prefix, queue))
        if task is None or task.done():  # first use, or its event loop is gone
            task = asyncio.get_running_loop().create_task(self._read(w))
            self._readers[queue] = (w, task)
        return w

    async def _read(self, w: Waiters) -> None:
        conn = self.r if is_cluster(self.r) else redis.asyncio.Redis(
            connection_pool=reader_pool(self.r.connection_pool, redis.asyncio.ConnectionPool))
        try:
            while True:
                try:
                    item = await conn.blpop([w.key], timeout=5)
                    batch = [] if item is None else [item[1]] + (await conn.lpop(w.key, 1000) or [])
                except (redis.RedisError, OSError):  # Redis away: the waiters' own timeouts apply
                    await asyncio.sleep(0.5)
                    continue
                for raw in batch:
                    got = w.take(raw)
                    if got and not got[0].done():
                        got[0].set_result(got[1])
        finally:
            if conn is not self.r:
                await conn.connection_pool.disconnect()
