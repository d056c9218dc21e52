'use strict';
// Runs against a real Redis and gpuq worker started by tests/e2e/test_clients.py
// (GPUQ_REDIS, GPUQ_MODEL_NAME, GPUQ_WANT as JSON: the expected mlp output).
const test = require('node:test');
const assert = require('node:assert');
const path = require('path');
const { Gpuq, tensor } = require(path.join(__dirname, '..', 'gpuq'));

test('mlp and errors through JSON jobs', async () => {
  const gq = await new Gpuq({ url: process.env.GPUQ_REDIS }).connect();
  try {
    const want = JSON.parse(process.env.GPUQ_WANT);
    const res = await gq.run('mlp', { x: tensor('f32', [1, 4], [1, 2, 3, 4]) },
      { model: process.env.GPUQ_MODEL_NAME, id: 'node-1', meta: { from: 'node' } });
    assert.strictEqual(res.status, 'ok');
    assert.deepStrictEqual(res.meta, { from: 'node' });
    assert.deepStrictEqual(res.outputs.y.shape, [1, want.length]);
    want.forEach((v, i) => assert.ok(Math.abs(res.outputs.y.data[i] - v) < 1e-4, `y[${i}]`));
    assert.strictEqual((await gq.result('node-1')).id, 'node-1');
    const bad = await gq.run('mlp', { x: tensor('f32', [1, 3], [1, 2, 3]) }, { model: process.env.GPUQ_MODEL_NAME });
    assert.strictEqual(bad.ok, false);
    assert.strictEqual(bad.error.code, 'shape_mismatch');
    assert.throws(() => bad.raiseForError(), /shape_mismatch/);
    // many at once: they wait side by side
    const many = await Promise.all(Array.from({ length: 20 }, () =>
      gq.run('mlp', { x: tensor('f32', [1, 4], [1, 2, 3, 4]) }, { model: process.env.GPUQ_MODEL_NAME })));
    assert.ok(many.every((r) => r.ok));
  } finally {
    await gq.close();
  }
});
