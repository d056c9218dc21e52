'use strict';
// A Node http gateway: the event loop never computes. Each POST /embed is
// handed to gpuq and awaited; logins and dashboards on the same loop keep
// answering while the workers batch the requests into one GEMM.
// With the client installed (npm install clients/node) and a worker serving an
// mlp named `encoder` (or the name in GPUQ_MODEL_NAME):
//   GPUQ_REDIS=redis://127.0.0.1:6379 PORT=8080 NODE_PATH=/usr/share/nodejs node gateway.js
// POST /search {"query", "k"}: the query embedded by the text encoder `text`
// (GPUQ_TEXT_MODEL), then its k nearest in the knn index `docs`
// (GPUQ_INDEX_NAME) of the same encoder's embeddings of the texts in
// GPUQ_DOCS (a JSON list); clients/python/examples/fastapi_gateway.py builds it.
const fs = require('fs');
const http = require('http');
const { Gpuq, GpuqError, GpuqTimeoutError, tensor } = require('gpuq-client');

const gq = new Gpuq({ url: process.env.GPUQ_REDIS || 'redis://127.0.0.1:6379' });
const model = process.env.GPUQ_MODEL_NAME || 'encoder';
const textModel = process.env.GPUQ_TEXT_MODEL || 'text';
const index = process.env.GPUQ_INDEX_NAME || 'docs';
const docs = process.env.GPUQ_DOCS ? JSON.parse(fs.readFileSync(process.env.GPUQ_DOCS, 'utf8')) : [];

function send(res, status, body) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') return send(res, 200, { ok: true });
  if (req.method !== 'POST' || !['/embed', '/search'].includes(req.url)) {
    return send(res, 404, { error: 'POST /embed or /search' });
  }
  let body = '';
  req.on('data', (c) => { body += c; });
  req.on('end', async () => {
    try {
      if (req.url === '/search') return send(res, 200, await search(JSON.parse(body)));
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

async function search({ query, k = 5 }) {
  if (typeof query !== 'string' || !docs.length || !(k >= 1)) throw new Error('want {"query": str, "k" >= 1} and GPUQ_DOCS');
  const q = await gq.embed(query, textModel, { timeout: 10 });
  const out = await gq.run('knn', { q: tensor('f32', [1, q.length], q) },
    { model: index, params: { k: Math.min(k, docs.length), metric: 'cosine' }, timeout: 10 });
  const ix = out.outputs.indices.data, scores = out.outputs.scores.data;
  return { results: Array.from(ix, (i, n) => ({ text: docs[Number(i)], score: scores[n] })) };
}

gq.connect().then(() => server.listen(Number(process.env.PORT || 8080), '127.0.0.1', () => {
  console.log(`gateway on http://127.0.0.1:${server.address().port}`);
}), (e) => { console.error(e.message); process.exit(1); });
