'use strict';
// A thin Node client for gpuq over node-redis, with JSON jobs (field `json`,
// tensor data in base64): no msgpack needed. Tensors are typed arrays:
//   {dtype: 'f32', shape: [2, 3], data: Float32Array}
//
//   const { Gpuq } = require('./gpuq');
//   const gq = new Gpuq({ url: 'redis://127.0.0.1:6379' });
//   await gq.connect();
//   const res = await gq.run('mlp', { x: tensor('f32', [1, 4], [0.1, 0.2, 0.3, 0.4]) }, { model: 'encoder' });
//   res.outputs.y.data  // Float32Array
const crypto = require('crypto');
const { createClient } = require('redis');

const ARRAYS = {
  f32: Float32Array, f64: Float64Array, i8: Int8Array, u8: Uint8Array, i32: Int32Array,
  i64: BigInt64Array, f16: Uint16Array, bf16: Uint16Array,  // halves travel as raw 16-bit words
};

function tensor(dtype, shape, values) {
  const T = ARRAYS[dtype];
  if (!T) throw new TypeError(`gpuq has no dtype ${dtype}`);
  return { dtype, shape, data: values instanceof T ? values : T.from(values) };
}

function encodeTensor(t) {
  const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { dtype: t.dtype, shape: t.shape, data: b.toString('base64') };
}

function decodeTensor(t) {
  const b = Buffer.from(t.data, 'base64');
  const T = ARRAYS[t.dtype];
  const copy = new Uint8Array(b);   // aligned, owned
  return { dtype: t.dtype, shape: t.shape, data: new T(copy.buffer, 0, b.length / T.BYTES_PER_ELEMENT) };
}

class GpuqError extends Error {
  constructor(code, message, result) {
    super(`${code}: ${message}`);
    this.code = code;
    this.result = result;
  }
}

class Result {
  constructor(raw) {
    this.raw = raw;
    this.id = raw.id;
    this.status = raw.status;
    this.error = raw.error;
    this.meta = raw.meta;
    this.timing = raw.timing || {};
    this.worker = raw.worker;
    this.outputs = {};
    for (const [k, v] of Object.entries(raw.outputs || {})) this.outputs[k] = decodeTensor(v);
  }
  get ok() { return this.status === 'ok'; }
  raiseForError() {
    if (!this.ok) throw new GpuqError(this.error.code, this.error.message, this);
    return this;
  }
}

class Gpuq {
  constructor({ url = 'redis://127.0.0.1:6379', prefix = 'gpuq', queue = 'default' } = {}) {
    this.prefix = prefix;
    this.queue = queue;
    this.redis = createClient({ url });
    this.redis.on('error', () => {});   // node-redis reconnects by itself
  }
  async connect() { await this.redis.connect(); return this; }
  async close() { await this.redis.quit(); }
  key(suffix, queue) { return `${this.prefix}:{${queue || this.queue}}:${suffix}`; }

  // Puts one job on the queue; resolves to its stream entry id.
  async enqueue(op, inputs, opts = {}) {
    const { queue, ...fields } = opts;
    const job = { op, inputs: {} };
    for (const [k, t] of Object.entries(inputs)) job.inputs[k] = encodeTensor(t);
    for (const [k, v] of Object.entries(fields)) if (v !== undefined) job[k] = v;
    return this.redis.xAdd(this.key('jobs', queue), '*', { json: JSON.stringify(job) });
  }

  // The next result on replyTo. Each waiter gets its own connection, so
  // many requests can wait at once without blocking each other.
  async wait(replyTo, timeoutS = 30) {
    const conn = this.redis.duplicate();
    conn.on('error', () => {});
    await conn.connect();
    try {
      const item = await conn.blPop(replyTo, timeoutS);
      if (!item) throw new Error(`no result on ${replyTo} within ${timeoutS} s`);
      return new Result(JSON.parse(item.element));
    } finally {
      await conn.quit();
    }
  }

  // Enqueues with its own reply list and waits for the result.
  async run(op, inputs, opts = {}) {
    const { timeoutS = 30, ...rest } = opts;
    const replyTo = this.key(`reply:${process.pid}:${crypto.randomUUID()}`, rest.queue);
    await this.enqueue(op, inputs, { ...rest, reply_to: replyTo });
    return this.wait(replyTo, timeoutS);
  }

  // The stored result of jobId, or null.
  async result(jobId, queue) {
    const raw = await this.redis.get(this.key(`result:${jobId}`, queue));
    return raw === null ? null : new Result(JSON.parse(raw));
  }
}

module.exports = { Gpuq, GpuqError, Result, tensor };
