'use strict';
// A Node http gateway: the event loop never computes. Each POST /embed is
// handed to gpuq and awaited; logins and dashboards on the same loop keep
// answering while the workers batch the requests into one GEMM.
// With the client installed (npm install clients/node) and a worker serving an
// mlp named `encoder` (or the name in GPUQ_MODEL_NAME):
//   GPUQ_REDIS=redis://127.0.0.1:6379 PORT=8080 NODE_PATH=/usr/share/nodejs node gateway.js
const http = require('http');
const { Gpuq, GpuqError, GpuqTimeoutError, tensor } = require('gpuq-client');

const gq = new Gpuq({ url: process.env.GPUQ_REDIS || 'redis://127.0.0.1:6379' });
const model = process.env.GPUQ_MODEL_NAME || 'encoder';

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, { ok: true });
  if (req.method !== 'POST' || req.url !== '/embed') return send(res, 404, { error: 'POST /embed' });
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', async () => {
    try {
      const rows = JSON.parse(body).x;
      if (!Array.isArray(rows) || !rows.length || !Array.isArray(rows[0])) return send(res, 400, { error: 'x must be a list of rows' });
      const x = tensor('f32', [rows.length, rows[0].length], rows.flat());
      const out = await gq.run('mlp', { x }, { model, timeout: 10 });
      const y = out.outputs.y;
      const list = [];
      for (let r = 0; r < y.shape[0]; r++) list.push(Array.from(y.data.subarray(r * y.shape[1], (r + 1) * y.shape[1])));
      send(res, 200, { y: list, batch_size: out.timing.batch_size });
    } catch (e) {
      if (e instanceof GpuqError) return send(res, ['shape_mismatch', 'bad_request'].includes(e.code) ? 422 : 502, { error: e.message });
      if (e instanceof GpuqTimeoutError) return send(res, 504, { error: e.message });
      send(res, 400, { error: e.message });
    }
  });
});

gq.connect().then(() => server.listen(Number(process.env.PORT || 8080), '127.0.0.1', () => {
  console.log(`gateway on http://127.0.0.1:${server.address().port}`);
}), (e) => { console.error(e.message); process.exit(1); });
