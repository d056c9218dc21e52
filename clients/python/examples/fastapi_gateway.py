"""A FastAPI gateway: HTTP in, gpuq out. The heavy compute runs on gpuq
workers; the event loop only awaits Redis, so it keeps serving logins and
dashboards while the GPU (or CPU) batches many requests into one GEMM.

    GPUQ_REDIS=redis://127.0.0.1:6379 uvicorn fastapi_gateway:app --port 8000
    curl -X POST localhost:8000/embed -H 'content-type: application/json' -d '{"x": [[0.1, 0.2, ...]]}'
"""
import os
import sys

import numpy as np
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from gpuq_client import AsyncClient, GpuqError  # noqa: E402

app = FastAPI(title="gpuq gateway")
gq = AsyncClient(os.environ.get("GPUQ_REDIS", "redis://127.0.0.1:6379"))
MODEL = os.environ.get("GPUQ_MODEL_NAME", "encoder")


class EmbedRequest(BaseModel):
    x: list[list[float]]


@app.post("/embed")
async def embed(req: EmbedRequest):
    x = np.asarray(req.x, dtype=np.float32)
    if x.ndim != 2:
        raise HTTPException(400, "x must be a list of rows")
    try:
        res = (await gq.run("mlp", {"x": x}, model=MODEL, timeout=10)).raise_for_error()
    except GpuqError as e:
        raise HTTPException(422 if e.code in ("shape_mismatch", "bad_request") else 502, str(e))
    except TimeoutError:
        raise HTTPException(504, "no gpuq worker answered in time")
    return {"y": res.outputs["y"].tolist(), "batch_size": res.timing.get("batch_size")}


@app.get("/healthz")
async def healthz():
    return {"ok": True}
