"""A FastAPI gateway: HTTP in, gpuq out. The heavy compute runs on gpuq
workers; the event loop only awaits Redis, so it keeps serving logins and
dashboards while the GPU (or CPU) batches many requests into one GEMM.

With the client installed (pip install clients/python) and a worker serving an
mlp named `encoder` (or the name in GPUQ_MODEL_NAME), from this folder:

    GPUQ_REDIS=redis://127.0.0.1:6379 GPUQ_MODEL_NAME=encoder python3 -m uvicorn fastapi_gateway:app --port 8000
    curl -X POST localhost:8000/embed -H 'content-type: application/json' -d '{"x": [[0.1, 0.2, ...]]}'
"""
import os
from typing import List

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

from gpuq_client import AsyncClient, GpuqError, GpuqTimeoutError

app = FastAPI(title="gpuq gateway")
gq = AsyncClient(os.environ.get("GPUQ_REDIS", "redis://127.0.0.1:6379"))
MODEL = os.environ.get("GPUQ_MODEL_NAME", "encoder")


class EmbedRequest(BaseModel):
    x: List[List[float]]


@app.post("/embed")
async def embed(req: EmbedRequest):
    x = np.asarray(req.x, dtype=np.float32)
    if x.ndim != 2:
        raise HTTPException(400, "x must be a list of rows")
    try:
        res = await gq.run("mlp", {"x": x}, model=MODEL, timeout=10)
    except GpuqError as e:
        raise HTTPException(422 if e.code in ("shape_mismatch", "bad_request") else 502, str(e))
    except GpuqTimeoutError:
        raise HTTPException(504, "no gpuq worker answered in time")
    return {"y": res.outputs["y"].tolist(), "batch_size": res.timing.get("batch_size")}


@app.get("/healthz")
async def healthz():
    return {"ok": True}


@app.on_event("shutdown")
async def close():
    await gq.close()
