"""The blocking client, over redis-py; run() may be called from many threads."""
from __future__ import annotations

import concurrent.futures
import threading
import uuid
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import redis
from redis.cluster import RedisCluster

import numpy as np

from ._protocol import (GpuqTimeoutError, Result, chunks_of, decode_result, embed_params, encode_job, labelled,
                        op_params, ranking, rerank_inputs, sparse_rows)
from ._waiters import Waiters

DEFAULT_URL = "redis://127.0.0.1:6379"


class Base:
    def __init__(self, prefix: str, queue: str):
        self.prefix, self.queue = prefix, queue

    def key(self, suffix: str, queue: Optional[str] = None) -> str:
        return f"{self.prefix}:{{{queue or self.queue}}}:{suffix}"

    @staticmethod
    def job(op: str, inputs: Mapping[str, Any], *, model: Optional[str] = None,
            params: Optional[Mapping[str, Any]] = None, id: Optional[str] = None, reply_to: Optional[str] = None,
            callback: Optional[str] = None, priority: Optional[int] = None, timeout_ms: Optional[int] = None,
            deadline_ms: Optional[int] = None, result_ttl: Optional[int] = None, meta: Any = None) -> bytes:
        return encode_job(op, inputs, model=model, params=params, id=id, reply_to=reply_to, callback=callback,
                          priority=priority, timeout_ms=timeout_ms, deadline_ms=deadline_ms,
                          result_ttl=result_ttl, meta=meta)

    @staticmethod
    def waited_job(w: Waiters, options: Dict[str, Any]) -> str:
        """Gives the job its id (one of its own when it has none), the client's
        reply list and result_ttl 0 (the reply is the result: none stored)
        unless asked otherwise; returns the id."""
        if options.get("reply_to") is not None:
            raise TypeError("run() waits on the client's own reply list: use enqueue() and wait() for another")
        options["id"] = job_id = str(options.get("id") or uuid.uuid4().hex)
        options["reply_to"] = w.key
        if options.get("result_ttl") is None:
            options["result_ttl"] = 0
        return job_id


def tls_options(url: str, ssl_ca_certs: Optional[str], ssl_certfile: Optional[str],
                ssl_keyfile: Optional[str]) -> Dict[str, Any]:
    """redis-py's keywords for a rediss:// url: the server's certificate and
    its name checked (against the system's CAs, or ssl_ca_certs), and a client
    certificate for Redis with tls-auth-clients (mutual TLS). None for redis://."""
    given = {k: v for k, v in (("ssl_ca_certs", ssl_ca_certs), ("ssl_certfile", ssl_certfile),
                               ("ssl_keyfile", ssl_keyfile)) if v is not None}
    if not url.startswith("rediss://"):
        if given:
            raise ValueError(f"{', '.join(given)}: for rediss:// URLs only")
        return {}
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True, **given}


def reader_pool(pool: Any, cls: Any) -> Any:
    """A one-connection pool to the same server as pool, for a blocking reader."""
    return cls(connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs)


def is_cluster(r: Any) -> bool:
    """Whether r is a Redis Cluster client (sync or asyncio): it has a pool per
    node, so a blocking reader shares it, holding one of the reply list's node's
    connections, rather than getting a pool of its own."""
    return not hasattr(r, "connection_pool")


class Client(Base):
    """Blocking client over redis-py. All waiting goes through one reply list
    and one reader connection per queue, however many threads wait. On a Redis
    Cluster, cluster=True (or a redis.cluster.RedisCluster as redis_client):
    every key of a queue is in its slot, so each call goes to one master.
    rediss:// speaks TLS: the certificate is checked, name included, against
    the system's CAs or ssl_ca_certs; ssl_certfile and ssl_keyfile are a
    client certificate for mutual TLS."""

    def __init__(self, url: str = DEFAULT_URL, prefix: str = "gpuq", queue: str = "default",
                 redis_client: Any = None, cluster: bool = False, *, ssl_ca_certs: Optional[str] = None,
                 ssl_certfile: Optional[str] = None, ssl_keyfile: Optional[str] = None):
        super().__init__(prefix, queue)
        tls = tls_options(url, ssl_ca_certs, ssl_certfile, ssl_keyfile)
        self.r = redis_client or (RedisCluster.from_url(url, **tls) if cluster
                                  else redis.Redis.from_url(url, **tls))
        self._waiters: Dict[str, Waiters] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._threads: list = []

    def enqueue(self, op: str, inputs: Mapping[str, Any], queue: Optional[str] = None, **options: Any) -> str:
        """Puts one job on the queue; returns its stream entry id. options: model,
        params, id, reply_to, callback, priority, timeout_ms, deadline_ms, result_ttl, meta."""
        return self.r.xadd(self.key("jobs", queue), {"job": self.job(op, inputs, **options)}).decode()

    def wait(self, reply_to: str, timeout: float = 30) -> Result:
        """The next result on a reply list of your own (error or not);
        GpuqTimeoutError after timeout seconds. It holds a connection while it waits."""
        item = self.r.blpop([reply_to], timeout=timeout)
        if item is None:
            raise GpuqTimeoutError(f"no result on {reply_to} within {timeout} s")
        return decode_result(item[1])

    def run(self, op: str, inputs: Mapping[str, Any], timeout: float = 30, queue: Optional[str] = None,
            **options: Any) -> Result:
        """Enqueues a job and waits for its result: GpuqError on an error result,
        GpuqTimeoutError when none comes within timeout seconds."""
        w = self._waiters_for(queue or self.queue)
        job_id = self.waited_job(w, options)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        w.add(job_id, fut)
        try:
            self.enqueue(op, inputs, queue=queue, **options)
            res = fut.result(timeout)
        except concurrent.futures.TimeoutError:
            raise GpuqTimeoutError(f"no result for job {job_id} within {timeout} s") from None
        finally:
            w.discard(job_id, fut)
        return res.raise_for_error()

    def embed(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
              **options: Any) -> np.ndarray:
        """Sentence embeddings from the text encoder `model`: [len(texts), dimensions], or
        [dimensions] for one str, f32 unless dtype says otherwise. Keyword params (the model
        folder's defaults when left out): pooling, normalize, max_length, prompt, prompt_name,
        truncate, truncation_direction, dimensions, dtype (f32, f16, int8, uint8, binary,
        ubinary) and ranges (int8/uint8: [2, dimensions]); other keywords go to run()."""
        embed_params(options)
        res = self.run("embed", {"text": texts if isinstance(texts, str) else list(texts)}, timeout=timeout,
                       model=model, **options)
        return res.outputs["y"][0] if isinstance(texts, str) else res.outputs["y"]

    def embed_document(self, text: str, model: str, *, tokens: int, overlap: int = 0, timeout: float = 30,
                       **options: Any) -> List[Dict[str, Any]]:
        """A long text embedded in overlapping windows of `tokens` tokens (`overlap` shared by
        neighbours): [{"text", "start", "end", "embedding"}], start and end the window's byte
        span in the text's UTF-8. Other keywords as embed()'s."""
        embed_params(options)
        options.setdefault("params", {})["chunk"] = {"tokens": tokens, "overlap": overlap}
        return chunks_of(self.run("embed", {"text": text}, timeout=timeout, model=model, **options), text)

    def embed_sparse(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
                     **options: Any) -> Any:
        """SPLADE vectors from the sparse encoder `model`: per text {"indices", "values"} (numpy,
        indices increasing), and "tokens" with return_tokens=True (needs top_k); one dict for a
        single str. Keyword params: top_k, return_tokens, max_length."""
        op_params(options, ("top_k", "return_tokens", "max_length"))
        one = isinstance(texts, str)
        return sparse_rows(self.run("embed_sparse", {"text": texts if one else list(texts)}, timeout=timeout,
                                    model=model, **options), one)

    def rerank(self, query: str, documents: Sequence[str], model: str, *, timeout: float = 30,
               **options: Any) -> List[Dict[str, Any]]:
        """The documents scored against query by the cross-encoder `model`, highest first:
        [{"index", "score"}] (and "text" with return_text=True). Keyword params: top_n,
        raw_scores, return_text, max_length; other keywords go to run()."""
        op_params(options, ("top_n", "raw_scores", "return_text", "max_length"))
        return ranking(self.run("rerank", rerank_inputs(query, documents), timeout=timeout, model=model,
                                **options))

    def classify(self, texts: Union[str, Sequence[str]], model: str, *, timeout: float = 30,
                 **options: Any) -> Any:
        """Labels for each text from the sequence classifier `model`: per text, [{"label",
        "score"}] highest first (one list for a single str). Keyword params: top_k, function
        (softmax, sigmoid, none), max_length; other keywords go to run()."""
        op_params(options, ("top_k", "function", "max_length"))
        one = isinstance(texts, str)
        return labelled(self.run("classify", {"text": texts if one else list(texts)}, timeout=timeout, model=model,
                                 **options), one)

    def result(self, job_id: str, queue: Optional[str] = None) -> Optional[Result]:
        """The stored result of job_id (error or not), or None."""
        raw = self.r.get(self.key(f"result:{job_id}", queue))
        return None if raw is None else decode_result(raw)

    def close(self) -> None:
        """Stops the readers and deletes the client's reply lists."""
        self._closed.set()
        for t in self._threads:
            t.join()
        for w in self._waiters.values():
            self.r.delete(w.key)
        self.r.close()

    def _waiters_for(self, queue: str) -> Waiters:
        with self._lock:
            w = self._waiters.get(queue)
            if w is None:
                w = self._waiters[queue] = Waiters(Waiters.reply_key(self.prefix, queue))
                conn = self.r if is_cluster(self.r) else redis.Redis(
                    connection_pool=reader_pool(self.r.connection_pool, redis.ConnectionPool))
                t = threading.Thread(target=self._read, args=(w, conn), name=f"gpuq-reader-{queue}", daemon=True)
                self._threads.append(t)
                t.start()
            return w

    def _read(self, w: Waiters, conn: redis.Redis) -> None:
        while not self._closed.is_set():
            try:
                item = conn.blpop([w.key], timeout=1)
                batch = [] if item is None else [item[1]] + (conn.lpop(w.key, 1000) or [])
            except redis.RedisError:  # Redis away: the waiters' own timeouts apply
                self._closed.wait(0.5)
                continue
            for raw in batch:
                got = w.take(raw)
                if got:
                    got[0].set_result(got[1])
        if conn is not self.r:
            conn.close()
