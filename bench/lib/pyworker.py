"""The strongest Python peer: a Redis Streams worker that speaks gpuq's
protocol and batches with numpy, as a careful team would write it in Python.
   pyworker.py REDIS_PORT MODEL.safetensors [MAX_BATCH]"""
import os
import sys

import msgpack
import numpy as np
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peer_tasks  # noqa: E402

port, path = int(sys.argv[1]), sys.argv[2]
max_batch = int(sys.argv[3]) if len(sys.argv) > 3 else 256
os.environ["BENCH_MODEL"] = path
layers = peer_tasks._load()     # the same loader RQ's and Celery's task use

r = redis.Redis(port=port)
key = "gpuq:{default}:jobs"
try:
    r.xgroup_create(key, "workers", id="0", mkstream=True)
except redis.ResponseError:
    pass
while True:
    got = r.xreadgroup("workers", "pyworker", {key: ">"}, count=max_batch, block=1000)
    if not got:
        continue
    entries = got[0][1]
    jobs = [msgpack.unpackb(f[b"job"]) for _, f in entries]
    xs = [np.frombuffer(j["inputs"]["x"]["data"], "<f4").reshape(j["inputs"]["x"]["shape"]) for j in jobs]
    y = np.concatenate(xs)
    for i, (w, b) in enumerate(layers):
        y = y @ w + b
        if i < len(layers) - 1:
            np.maximum(y, 0, out=y)
    pipe = r.pipeline(transaction=True)
    row = 0
    for (eid, _), j, x in zip(entries, jobs, xs):
        out = y[row:row + x.shape[0]]
        row += x.shape[0]
        jid = j.get("id") or eid.decode()
        res = msgpack.packb({"id": jid, "status": "ok", "outputs": {"y": {
            "dtype": "f32", "shape": list(out.shape), "data": out.astype("<f4").tobytes()}}, "error": None})
        pipe.set(f"gpuq:{{default}}:result:{jid}", res, ex=3600)
        if j.get("reply_to"):
            pipe.rpush(j["reply_to"], res)
            pipe.expire(j["reply_to"], 3600)
        pipe.xack(key, "workers", eid)
    pipe.execute()
