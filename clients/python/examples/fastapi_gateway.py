"""A FastAPI gateway: HTTP in, gpuq out. The heavy compute runs on gpuq
workers; the event loop only awaits Redis, so it keeps serving logins and
dashboards while the GPU (or CPU) batches many requests together.

With the client installed (pip install clients/python) and a worker serving a text
encoder folder as `text` (or the name in GPUQ_TEXT_MODEL), from this folder:

    GPUQ_REDIS=redis://127.0.0.1:6379 python3 -m uvicorn fastapi_gateway:app --port 8000
    curl -X POST localhost:8000/embed -H 'content-type: application/json' -d '{"texts": ["A man is eating food."]}'

Semantic search: a knn index `docs` (or GPUQ_INDEX_NAME) of the same encoder's embeddings of
the texts in GPUQ_DOCS (a JSON list; docs.json beside this file is a sample), and, when
GPUQ_RERANK_MODEL names a cross-encoder the worker serves, its k best re-ordered by it. Build
the index with a worker serving the encoder, then serve both (and the reranker):

    python3 fastapi_gateway.py docs.json docs.safetensors
    gpuq worker --model text=all-MiniLM-L6-v2/ --model docs=docs.safetensors [--model ce=CROSS_ENCODER/]
    GPUQ_DOCS=docs.json [GPUQ_RERANK_MODEL=ce] python3 -m uvicorn fastapi_gateway:app --port 8000
    curl -X POST localhost:8000/search -H 'content-type: application/json' -d '{"query": "rain", "k": 3}'
"""
import json
import os
import struct
import sys
from typing import List

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from gpuq_client import AsyncClient, Client, GpuqError, GpuqTimeoutError

URL = os.environ.get("GPUQ_REDIS", "redis://127.0.0.1:6379")
app = FastAPI(title="gpuq gateway")
gq = AsyncClient(URL)
TEXT_MODEL = os.environ.get("GPUQ_TEXT_MODEL", "text")
INDEX = os.environ.get("GPUQ_INDEX_NAME", "docs")
RERANK_MODEL = os.environ.get("GPUQ_RERANK_MODEL")
DOCS: List[str] = []
if os.environ.get("GPUQ_DOCS"):
    with open(os.environ["GPUQ_DOCS"]) as f:
        DOCS = json.load(f)


async def gpuq(call):
    """Awaits a gpuq call; its errors as HTTP errors."""
    try:
        return await call
    except GpuqError as e:
        raise HTTPException(422 if e.code in ("shape_mismatch", "bad_request") else 502, str(e))
    except GpuqTimeoutError:
        raise HTTPException(504, "no gpuq worker answered in time")


class EmbedRequest(BaseModel):
    texts: List[str]


@app.post("/embed")
async def embed(req: EmbedRequest):
    """The texts' sentence embeddings from the text encoder."""
    if not req.texts:
        raise HTTPException(400, "texts must list at least one text")
    y = await gpuq(gq.embed(req.texts, TEXT_MODEL, timeout=10))
    return {"embeddings": y.tolist()}


class SearchRequest(BaseModel):
    query: str
    k: int = 5


@app.post("/search")
async def search(req: SearchRequest):
    """The query's embedding, its nearest texts by cosine, and, with a reranker, those
    candidates (4 k of them) scored against the query by the cross-encoder: its k best."""
    if not DOCS or req.k < 1:
        raise HTTPException(400, "k must be at least 1, and GPUQ_DOCS must list the index's texts")
    q = await gpuq(gq.embed([req.query], TEXT_MODEL, timeout=10))
    wanted = min(4 * req.k if RERANK_MODEL else req.k, len(DOCS))
    res = await gpuq(gq.run("knn", {"q": q}, model=INDEX, params={"k": wanted, "metric": "cosine"}, timeout=10))
    hits = [{"text": DOCS[i], "score": float(s)} for i, s in zip(res.outputs["indices"][0], res.outputs["scores"][0])]
    if RERANK_MODEL:
        ranked = await gpuq(gq.rerank(req.query, [h["text"] for h in hits], RERANK_MODEL, top_n=req.k, timeout=10))
        hits = [dict(hits[r["index"]], rerank_score=r["score"]) for r in ranked]
    return {"results": hits[:req.k]}


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.on_event("shutdown")
async def close():
    await gq.close()


def build_index(docs_path: str, out_path: str) -> None:
    """Embeds the texts of docs_path with TEXT_MODEL and writes them as a knn index."""
    with open(docs_path) as f:
        docs = json.load(f)
    client = Client(URL)
    try:
        e = np.ascontiguousarray(client.embed(docs, TEXT_MODEL, timeout=600), dtype="<f4")
    finally:
        client.close()
    head = json.dumps({"embeddings": {"dtype": "F32", "shape": list(e.shape), "data_offsets": [0, e.nbytes]}}).encode()
    with open(out_path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + e.tobytes())


if __name__ == "__main__":
    build_index(*sys.argv[1:3])
