'use strict';
// A Node http gateway: the event loop never computes. Each request is
// handed to gpuq and awaited; logins and dashboards on the same loop keep
// answering while the workers batch the requests together.
// With the client installed (npm install clients/node) and a worker serving a
// text encoder folder as `text` (or the name in GPUQ_TEXT_MODEL):
//   GPUQ_REDIS=redis://127.0.0.1:6379 PORT=8080 NODE_PATH=/usr/share/nodejs node gateway.js
// POST /embed {"texts"}: their sentence embeddings.
// POST /search {"query", "k"}: the query embedded, then its nearest in the
// knn index `docs` (GPUQ_INDEX_NAME) of the same encoder's embeddings of the
// texts in GPUQ_DOCS (a JSON list; clients/python/examples/docs.json is a
// sample, and clients/python/examples/fastapi_gateway.py builds the index),
// and with GPUQ_RERANK_MODEL (a cross-encoder the worker serves) 4 k
// candidates re-ordered by it, its k best.
const fs = require('fs');
const http = require('http');
const { Gpuq, GpuqError, GpuqTimeoutError, tensor } = require('gpuq-client');

const gq = new Gpuq({ url: process.env.GPUQ_REDIS || 'redis://127.0.0.1:6379' });
const textModel = process.env.GPUQ_TEXT_MODEL || 'text';
const index = process.env.GPUQ_INDEX_NAME || 'docs';
const rerankModel = process.env.GPUQ_RERANK_MODEL;
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
      const { texts } = JSON.parse(body);
      if (!Array.isArray(texts) || !texts.length) return send(res, 400, { error: 'texts must list at least one text' });
      const rows = await gq.embed(texts, textModel, { timeout: 10 });
      send(res, 200, { embeddings: rows.map((r) => Array.from(r)) });
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
  const wanted = Math.min(rerankModel ? 4 * k : k, docs.length);
  const out = await gq.run('knn', { q: tensor('f32', [1, q.length], q) },
    { model: index, params: { k: wanted, metric: 'cosine' }, timeout: 10 });
  const ix = out.outputs.indices.data, scores = out.outputs.scores.data;
  let hits = Array.from(ix, (i, n) => ({ text: docs[Number(i)], score: scores[n] }));
  if (rerankModel) {
    const ranked = await gq.rerank(query, hits.map((h) => h.text), rerankModel, { topN: k, timeout: 10 });
    hits = ranked.map((r) => ({ ...hits[r.index], rerank_score: r.score }));
  }
  return { results: hits.slice(0, k) };
}

gq.connect().then(() => server.listen(Number(process.env.PORT || 8080), '127.0.0.1', () => {
  console.log(`gateway on http://127.0.0.1:${server.address().port}`);
}), (e) => { console.error(e.message); process.exit(1); });
