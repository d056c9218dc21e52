'use strict';
// The installed package against a real Redis and gpuq worker started by
// tests/e2e/test_clients.py: GPUQ_REDIS, GPUQ_MODEL_NAME (an mlp taking 4
// columns), GPUQ_WANT (JSON: its output for [1, 2, 3, 4]), GPUQ_KNN_NAME (an
// index of 4-wide rows), GPUQ_MSGPACK_ID (a job sent as msgpack whose result is stored).
const test = require('node:test');
const assert = require('node:assert');
const net = require('node:net');
const { createClient } = require('redis');
const { Gpuq, GpuqError, GpuqTimeoutError, tensor } = require('gpuq-client');

const model = process.env.GPUQ_MODEL_NAME;
const want = JSON.parse(process.env.GPUQ_WANT || '[]');
const x = () => tensor('f32', [1, 4], [1, 2, 3, 4]);
const close = (a, b) => Math.abs(a - b) < 1e-4;

async function withClient(fn) {
  const gq = await new Gpuq({ url: process.env.GPUQ_REDIS }).connect();
  try { await fn(gq); } finally { await gq.close(); }
}

test('run: an mlp result, not stored unless asked', () => withClient(async (gq) => {
  const res = await gq.run('mlp', { x: x() }, { model, id: 'node-1', meta: { from: 'node' } });
  assert.strictEqual(res.status, 'ok');
  assert.deepStrictEqual(res.meta, { from: 'node' });
  assert.deepStrictEqual(res.outputs.y.shape, [1, want.length]);
  want.forEach((v, i) => assert.ok(close(res.outputs.y.data[i], v), `y[${i}]`));
  assert.strictEqual(await gq.result('node-1'), null, 'a waited-for result is not stored twice');
  await gq.run('mlp', { x: x() }, { model, id: 'node-kept', resultTtl: 60 });
  assert.strictEqual((await gq.result('node-kept')).id, 'node-kept');
}));

test('rerank and classify: documents ranked, labels scored', () => withClient(async (gq) => {
  const docs = JSON.parse(process.env.GPUQ_CE_DOCS), wantR = JSON.parse(process.env.GPUQ_RERANK_WANT);
  const wantC = JSON.parse(process.env.GPUQ_CLASSIFY_WANT), query = JSON.parse(process.env.GPUQ_TEXTS)[1];
  const order = [...wantR.keys()].sort((a, b) => wantR[b] - wantR[a] || a - b);
  const ranked = await gq.rerank(query, docs, process.env.GPUQ_CE_MODEL, { returnText: true, topN: 3 });
  assert.deepStrictEqual(ranked.map((r) => r.index), order.slice(0, 3));
  assert.deepStrictEqual(ranked.map((r) => r.text), order.slice(0, 3).map((i) => docs[i]));
  ranked.forEach((r) => assert.ok(close(r.score, wantR[r.index]), `score ${r.index}`));
  const labelled = await gq.classify(docs, process.env.GPUQ_CE_MODEL);
  labelled.forEach((row, i) => assert.ok(row[0].label === 'LABEL_0' && close(row[0].score, wantC[i][0])));
  await assert.rejects(gq.rerank(query, docs, process.env.GPUQ_CE_MODEL, { topN: 0 }),
    (e) => e instanceof GpuqError && e.code === 'bad_request');
}));

test('embedSparse and embedDocument: ragged rows, windows with their spans', () => withClient(async (gq) => {
  const docs = JSON.parse(process.env.GPUQ_CE_DOCS), want = JSON.parse(process.env.GPUQ_SPARSE_WANT);
  const rows = await gq.embedSparse(docs, process.env.GPUQ_SPARSE_MODEL);
  rows.forEach((row, r) => {
    const a = want.offsets[r], b = want.offsets[r + 1];
    assert.deepStrictEqual(Array.from(row.indices), want.indices.slice(a, b));
    row.values.forEach((v, i) => assert.ok(close(v, want.values[a + i]), `values[${r}][${i}]`));
  });
  const doc = process.env.GPUQ_DOC, wantDoc = JSON.parse(process.env.GPUQ_DOC_WANT);
  const chunks = await gq.embedDocument(doc, process.env.GPUQ_TEXT_MODEL, { tokens: 16, overlap: 4 });
  assert.deepStrictEqual(chunks.map((c) => c.start), wantDoc.char_start);
  assert.deepStrictEqual(chunks.map((c) => c.end), wantDoc.char_end);
  chunks.forEach((c, r) => c.embedding.forEach((v, j) => assert.ok(close(v, wantDoc.y[r][j]), `chunk ${r}`)));
}));

test('embed: strings in, Float32Arrays out', () => withClient(async (gq) => {
  const texts = JSON.parse(process.env.GPUQ_TEXTS), wantY = JSON.parse(process.env.GPUQ_TEXT_WANT);
  const rows = await gq.embed(texts, process.env.GPUQ_TEXT_MODEL);
  assert.strictEqual(rows.length, texts.length);
  rows.forEach((row, r) => {
    assert.ok(row instanceof Float32Array && row.length === wantY[r].length);
    wantY[r].forEach((v, i) => assert.ok(close(row[i], v), `y[${r}][${i}]`));
  });
  const one = await gq.embed(texts[1], process.env.GPUQ_TEXT_MODEL, { pooling: 'mean', maxLength: 64 });
  wantY[1].forEach((v, i) => assert.ok(close(one[i], v), `one[${i}]`));
  await assert.rejects(gq.embed('x', process.env.GPUQ_TEXT_MODEL, { pooling: 'maximum' }),
    (e) => e instanceof GpuqError && e.code === 'bad_request');
  // Matryoshka dimensions, normalized again, and signs packed 8 a byte
  const short = await gq.embed(texts, process.env.GPUQ_TEXT_MODEL, { dimensions: 16 });
  short.forEach((row, r) => {
    const norm = Math.hypot(...wantY[r].slice(0, 16));
    row.forEach((v, i) => assert.ok(close(v, wantY[r][i] / norm), `short[${r}][${i}]`));
  });
  const bits = await gq.embed(texts, process.env.GPUQ_TEXT_MODEL, { dtype: 'ubinary' });
  bits.forEach((row, r) => {
    assert.ok(row instanceof Uint8Array && row.length === wantY[r].length / 8);
    row.forEach((b, k) => {
      let want = 0;
      for (let j = 0; j < 8; j++) want = (want << 1) | (wantY[r][k * 8 + j] > 0 ? 1 : 0);
      assert.strictEqual(b, want, `bits[${r}][${k}]`);
    });
  });
  await assert.rejects(gq.embed('x', process.env.GPUQ_TEXT_MODEL, { promptName: 'nope' }),
    (e) => e instanceof GpuqError && /no prompt named/.test(e.message));
}));

test('an error result rejects with GpuqError; a timeout with GpuqTimeoutError', () => withClient(async (gq) => {
  await assert.rejects(gq.run('mlp', { x: tensor('f32', [1, 3], [1, 2, 3]) }, { model }),
    (e) => e instanceof GpuqError && e.code === 'shape_mismatch' && e.result.ok === false);
  await assert.rejects(gq.run('mlp', { x: x() }, { model, queue: 'nobody-serves-this', timeout: 0.3, id: 'gone' }),
    (e) => e instanceof GpuqTimeoutError && !(e instanceof GpuqError));
  assert.strictEqual((await gq.reader('nobody-serves-this')).waiters.size, 0, 'the waiter that gave up is gone');
  await assert.rejects(gq.run('mlp', { x: x() }, { model, replyTo: 'mine' }), TypeError);
  await assert.rejects(gq.run('mlp', { x: x() }, { model, result_ttl: 5 }), /unknown option result_ttl/);
}));

test('many waiters share one connection', () => withClient(async (gq) => {
  const probe = createClient({ url: process.env.GPUQ_REDIS });
  await probe.connect();
  const opened = async () => Number(/total_connections_received:(\d+)/.exec(await probe.info('stats'))[1]);
  const before = await opened();
  const many = await Promise.all(Array.from({ length: 1000 }, () => gq.run('mlp', { x: x() }, { model })));
  assert.ok(many.every((r) => r.ok && close(r.outputs.y.data[0], want[0])));
  assert.ok((await opened()) - before <= 2, `connections opened: ${(await opened()) - before}`);
  await probe.quit();
}));

test('result() reads a result stored as msgpack', () => withClient(async (gq) => {
  const res = await gq.result(process.env.GPUQ_MSGPACK_ID);
  assert.strictEqual(res.id, process.env.GPUQ_MSGPACK_ID);
  want.forEach((v, i) => assert.ok(close(res.outputs.y.data[i], v), `y[${i}]`));
}));

test('knn indices survive JSON.stringify', () => withClient(async (gq) => {
  const res = await gq.run('knn', { q: x() }, { model: process.env.GPUQ_KNN_NAME, params: { k: 2 } });
  assert.ok(res.outputs.indices.data instanceof BigInt64Array);
  const back = JSON.parse(JSON.stringify(res));
  assert.deepStrictEqual(back.outputs.indices.data, Array.from(res.outputs.indices.data, Number));
  assert.strictEqual(back.outputs.indices.data.length, 2);
}));

test('connect() rejects when Redis is unreachable', async () => {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  await assert.rejects(new Gpuq({ url: `redis://127.0.0.1:${port}` }).connect(),
    new RegExp(`cannot connect to Redis at redis://127.0.0.1:${port}`));
});
