// The package's ES module entry, with its named exports.
import test from 'node:test';
import assert from 'node:assert';
import gpuq, { Gpuq, GpuqError, tensor } from 'gpuq-client';

test('import works as require does', async () => {
  assert.strictEqual(gpuq.Gpuq, Gpuq);
  const gq = await new Gpuq({ url: process.env.GPUQ_REDIS }).connect();
  try {
    const res = await gq.run('mlp', { x: tensor('f32', [1, 4], [1, 2, 3, 4]) }, { model: process.env.GPUQ_MODEL_NAME });
    assert.ok(res.ok);
    await assert.rejects(gq.run('mlp', { x: tensor('f32', [1, 2], [1, 2]) }, { model: process.env.GPUQ_MODEL_NAME }),
      GpuqError);
  } finally {
    await gq.close();
  }
});
