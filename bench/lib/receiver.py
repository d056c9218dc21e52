"""Webhook receivers for the benchmark, on 127.0.0.1, in one asyncio
process: one healthy receiver that answers 200 at once, N that never answer,
and M that answer 503 with Retry-After: 3600. Prints the ports as one JSON
line, then "<webhook-id> <unix time>" for each request the healthy one gets.
   receiver.py N_HANG N_503"""
import asyncio
import json
import sys
import time

ANSWERS = {"ok": b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
           "busy": b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3600\r\nContent-Length: 0\r\n\r\n",
           "hang": None}


def handler(kind):
    async def serve(reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                now = time.time()
                length, hook_id = 0, b"?"
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"webhook-id":
                        hook_id = value.strip()
                await reader.readexactly(length)
                if kind == "hang":
                    await asyncio.sleep(3600)
                if kind == "ok":
                    sys.stdout.write(f"{hook_id.decode()} {now:.6f}\n")
                writer.write(ANSWERS[kind])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
    return serve


async def main(n_hang, n_busy):
    servers, ports = [], {}
    for kind, n in (("ok", 1), ("hang", n_hang), ("busy", n_busy)):
        for _ in range(n):
            s = await asyncio.start_server(handler(kind), "127.0.0.1", 0, backlog=1024)
            servers.append(s)
            ports.setdefault(kind, []).append(s.sockets[0].getsockname()[1])
    print(json.dumps(ports), flush=True)
    while True:
        await asyncio.sleep(0.05)
        sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
