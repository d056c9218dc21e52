"""Open-loop load: XADDs jobs at a fixed rate whatever the answers do, and
measures each job's latency from its send time (in meta) to when the client
pops its result.
   loadgen.py PORT RATE SECONDS JOB_X_FILE -> prints JSON"""
import json
import sys
import threading
import time

import msgpack
import numpy as np
import redis

port, rate, secs = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
x = np.load(sys.argv[4])
reply = "gpuq:{default}:reply:load"
r, rc = redis.Redis(port=port), redis.Redis(port=port)
r.delete(reply)
lat, sizes, done = [], [], threading.Event()
expected = int(rate * secs)


def collect():
    while len(lat) < expected and not done.is_set():
        items = rc.lpop(reply, 1000)
        if not items:
            time.sleep(0.0005)
            continue
        now = time.time()
        for b in items:
            res = msgpack.unpackb(b)
            lat.append(now - res["meta"])
            sizes.append(res["timing"]["batch_size"])


th = threading.Thread(target=collect)
th.start()
t0, sent = time.time(), 0
while sent < expected:
    due = min(expected, int((time.time() - t0) * rate) + 1)
    if due > sent:
        pipe = r.pipeline(transaction=False)
        for i in range(sent, due):
            job = {"op": "mlp", "model": "m", "reply_to": reply, "result_ttl": 0, "meta": time.time(),
                   "inputs": {"x": {"dtype": "f32", "shape": [1, x.shape[1]], "data": x[i % len(x)].tobytes()}}}
            pipe.xadd("gpuq:{default}:jobs", {"job": msgpack.packb(job)})
        pipe.execute()
        sent = due
    else:
        time.sleep(0.0002)
send_secs = time.time() - t0
th.join(timeout=secs + 30)
done.set()
lat_ms = np.array(lat) * 1000
print(json.dumps({"offered": rate, "achieved_send_rate": sent / send_secs, "answered": len(lat), "sent": sent,
                  "p50": float(np.percentile(lat_ms, 50)), "p99": float(np.percentile(lat_ms, 99)),
                  "p999": float(np.percentile(lat_ms, 99.9)), "batch_sizes": sizes}))
