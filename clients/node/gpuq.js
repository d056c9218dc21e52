'use strict';
// A thin Node client for gpuq over node-redis, with JSON jobs (field `json`,
// tensor data in base64): no msgpack needed to send. Tensors are typed arrays:
//   {dtype: 'f32', shape: [2, 3], data: Float32Array}
//
//   const { Gpuq, tensor } = require('gpuq-client');   // or: import { Gpuq, tensor } from 'gpuq-client'
//   const gq = await new Gpuq({ url: 'redis://127.0.0.1:6379' }).connect();
//   const res = await gq.run('mlp', { x: tensor('f32', [1, 4], [0.1, 0.2, 0.3, 0.4]) }, { model: 'encoder' });
//   res.outputs.y.data  // Float32Array
//
// run() rejects with GpuqError on an error result and GpuqTimeoutError when no
// result comes in time. All waiting goes through one reply list and one reader
// connection per queue, however many run() calls wait at once.
const crypto = require('crypto');
const { createClient, createCluster, commandOptions } = require('redis');
const msgpack = require('./msgpack');

const ARRAYS = {
  f32: Float32Array, f64: Float64Array, i8: Int8Array, u8: Uint8Array, i32: Int32Array,
  i64: BigInt64Array, f16: Uint16Array, bf16: Uint16Array,  // halves travel as raw 16-bit words
};

// A tensor; JSON.stringify writes its data as an array of numbers (i64 too).
class Tensor {
  constructor(dtype, shape, data) {
    this.dtype = dtype;
    this.shape = shape;
    this.data = data;
  }
  toJSON() { return { dtype: this.dtype, shape: this.shape, data: Array.from(this.data, Number) }; }
}

function tensor(dtype, shape, values) {
  const T = ARRAYS[dtype];
  if (!T) throw new TypeError(`gpuq has no dtype ${dtype}`);
  const data = values instanceof T ? values : T.from(values, dtype === 'i64' ? BigInt : undefined);
  return new Tensor(dtype, shape, data);
}

function encodeTensor(t) {
  const b = Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { dtype: t.dtype, shape: t.shape, data: b.toString('base64') };
}

// data is base64 text in a JSON result, bytes in a msgpack one
function decodeTensor(t) {
  const T = ARRAYS[t.dtype];
  if (!T) throw new TypeError(`gpuq has no dtype ${t.dtype}`);
  const b = typeof t.data === 'string' ? Buffer.from(t.data, 'base64') : t.data;
  const copy = new Uint8Array(b);   // aligned, owned
  return new Tensor(t.dtype, t.shape, new T(copy.buffer, 0, b.length / T.BYTES_PER_ELEMENT));
}

class GpuqError extends Error {
  constructor(code, message, result) {
    super(`${code}: ${message}`);
    this.name = 'GpuqError';
    this.code = code;
    this.result = result;
  }
}

// No result within the time asked for; the job may still run. Not a GpuqError.
class GpuqTimeoutError extends Error {
  constructor(message) {
    super(message);
    this.name = 'GpuqTimeoutError';
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
    // tensors; a text output (classify's labels, rerank's texts) stays an array of strings
    for (const [k, v] of Object.entries(raw.outputs || {})) this.outputs[k] = Array.isArray(v) ? v : decodeTensor(v);
  }
  get ok() { return this.status === 'ok'; }
  raiseForError() {
    const e = this.error || {};
    if (!this.ok) throw new GpuqError(e.code || 'internal', e.message || 'no error given', this);
    return this;
  }
  toJSON() {
    const { id, status, outputs, error, meta, timing, worker } = this;
    return { id, status, outputs, error, meta, timing, worker };
  }
}

// A result as the worker wrote it: JSON text for a job sent as JSON, msgpack otherwise.
function decodeResult(raw) {
  if (typeof raw === 'string') return new Result(JSON.parse(raw));
  return new Result(raw[0] === 0x7b ? JSON.parse(raw.toString('utf8')) : msgpack.decode(raw));
}

// Job options in camelCase, and the protocol's names for them.
const FIELDS = {
  model: 'model', params: 'params', id: 'id', replyTo: 'reply_to', callback: 'callback', priority: 'priority',
  timeoutMs: 'timeout_ms', deadlineMs: 'deadline_ms', resultTtl: 'result_ttl', meta: 'meta',
};

// run()'s options for an op: those named in names (option -> param) move
// into params; the rest stay, with model.
function opParams(options, model, names) {
  const { params = {}, ...rest } = options;
  const p = { ...params };
  for (const [opt, name] of Object.entries(names)) {
    if (rest[opt] !== undefined) p[name] = rest[opt];
    delete rest[opt];
  }
  return { ...rest, model, params: p };
}

// A text input (embed): a string, or an array of strings.
const isText = (v) => typeof v === 'string' || (Array.isArray(v) && v.length > 0 && v.every((s) => typeof s === 'string'));

function jobOf(op, inputs, options) {
  const job = { op, inputs: {} };
  for (const [k, t] of Object.entries(inputs)) job.inputs[k] = isText(t) ? t : encodeTensor(t);
  for (const [k, v] of Object.entries(options)) {
    if (!FIELDS[k]) throw new TypeError(`gpuq: unknown option ${k} (options: ${Object.keys(FIELDS).join(', ')})`);
    if (v !== undefined) job[FIELDS[k]] = v;
  }
  return job;
}

// The user and password of a redis:// URL, for every node of a cluster.
function credentials(url) {
  const u = new URL(url);
  const c = {};
  if (u.username) c.username = decodeURIComponent(u.username);
  if (u.password) c.password = decodeURIComponent(u.password);
  return c;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

class Gpuq {
  // cluster: url names any node of a Redis Cluster (node-redis createCluster);
  // every key of a queue is in its slot, so each call goes to one master.
  // rediss:// speaks TLS, the certificate and its name checked (Node's
  // defaults); tls: more of Node's tls.connect options, say { ca, cert, key }
  // (PEM contents) for a private CA or mutual TLS.
  constructor({ url = 'redis://127.0.0.1:6379', prefix = 'gpuq', queue = 'default', cluster = false,
    tls = undefined } = {}) {
    this.prefix = prefix;
    this.queue = queue;
    this.where = url.replace(/\/\/[^@/]*@/, '//');   // no password in messages
    this.connected = false;
    // at start an unreachable Redis is an error; once connected, node-redis reconnects
    const reconnectStrategy = (retries) => (this.connected ? Math.min(100 * 2 ** retries, 5000)
      : new Error(`cannot reach Redis at ${this.where}`));
    const secure = new URL(url).protocol === 'rediss:';
    if (tls && !secure) throw new TypeError('gpuq: tls options are for rediss:// URLs');
    // every node of a cluster too, those found after MOVED included
    const socket = secure ? { reconnectStrategy, tls: true, ...tls } : { reconnectStrategy };
    this.redis = cluster ? createCluster({ rootNodes: [{ url }], defaults: { ...credentials(url), socket } })
      : createClient({ url, socket });
    this.redis.on('error', () => {});
    this.readers = new Map();   // queue -> reader
  }

  async connect() {
    try {
      await this.redis.connect();
    } catch (e) {
      const cause = e.originalError || e;
      throw new Error(`gpuq: cannot connect to Redis at ${this.where}: ${cause.message}`, { cause });
    }
    this.connected = true;
    return this;
  }

  // Stops the readers, fails their waiters, deletes the reply lists, closes.
  async close() {
    for (const r of this.readers.values()) {
      r.stopped = true;
      for (const ws of r.waiters.values()) for (const w of ws) w.reject(new Error('gpuq: client closed'));
      await r.conn.disconnect().catch(() => {});
      await this.redis.del(r.key);
    }
    this.readers.clear();
    this.connected = false;
    await this.redis.quit();
  }

  key(suffix, queue) { return `${this.prefix}:{${queue || this.queue}}:${suffix}`; }

  // Puts one job on the queue; resolves to its stream entry id. options: queue
  // and the job's model, params, id, replyTo, callback, priority, timeoutMs,
  // deadlineMs, resultTtl, meta.
  async enqueue(op, inputs, options = {}) {
    const { queue, ...fields } = options;
    return this.redis.xAdd(this.key('jobs', queue), '*', { json: JSON.stringify(jobOf(op, inputs, fields)) });
  }

  // The next result on a reply list of your own (error or not); it holds a
  // connection while it waits.
  async wait(replyTo, timeout = 30) {
    const conn = this.redis.duplicate();
    conn.on('error', () => {});
    await conn.connect();
    try {
      const item = await conn.blPop(commandOptions({ returnBuffers: true }), replyTo, timeout);
      if (!item) throw new GpuqTimeoutError(`no result on ${replyTo} within ${timeout} s`);
      return decodeResult(item.element);
    } finally {
      await conn.quit();
    }
  }

  // Enqueues a job and waits for its result (timeout in seconds); options as
  // enqueue's, less replyTo. resultTtl defaults to 0: the reply is the result.
  async run(op, inputs, options = {}) {
    const { timeout = 30, queue = this.queue, ...fields } = options;
    if (fields.replyTo !== undefined) throw new TypeError('gpuq: run() waits on its own reply list; use enqueue() and wait()');
    const job = jobOf(op, inputs, fields);   // unknown options fail before anything is sent
    const r = await this.reader(queue);
    const id = String(fields.id ?? crypto.randomUUID());
    let waiter;
    const got = new Promise((resolve, reject) => { waiter = { resolve, reject }; });
    got.catch(() => {});   // a timeout during the enqueue is awaited below, not unhandled
    const list = r.waiters.get(id) || [];
    r.waiters.set(id, list.concat(waiter));
    const timer = setTimeout(() => waiter.reject(new GpuqTimeoutError(`no result for job ${id} within ${timeout} s`)),
      timeout * 1000);
    try {
      job.id = id;
      job.reply_to = r.key;
      if (job.result_ttl === undefined) job.result_ttl = 0;
      await this.redis.xAdd(this.key('jobs', queue), '*', { json: JSON.stringify(job) });
      return (await got).raiseForError();
    } finally {
      clearTimeout(timer);
      const left = (r.waiters.get(id) || []).filter((w) => w !== waiter);
      if (left.length) r.waiters.set(id, left); else r.waiters.delete(id);
    }
  }

  // Sentence embeddings from the text encoder `model`: one typed array per
  // text (Float32Array unless dtype says otherwise), or one for a single
  // string. options: pooling, normalize, maxLength, prompt, promptName,
  // truncate, truncationDirection, dimensions, dtype (f32, f16, int8,
  // uint8, binary, ubinary), ranges (the model folder's defaults otherwise),
  // and run()'s.
  async embed(texts, model, options = {}) {
    const res = await this.run('embed', { text: texts }, opParams(options, model, {
      pooling: 'pooling', normalize: 'normalize', maxLength: 'max_length', prompt: 'prompt',
      promptName: 'prompt_name', truncate: 'truncate', truncationDirection: 'truncation_direction',
      dimensions: 'dimensions', dtype: 'dtype', ranges: 'ranges' }));
    const y = res.outputs.y, rows = [];
    for (let r = 0; r < y.shape[0]; r++) rows.push(y.data.slice(r * y.shape[1], (r + 1) * y.shape[1]));
    return typeof texts === 'string' ? rows[0] : rows;
  }

  // A long text embedded in overlapping windows of `tokens` tokens
  // (`overlap` shared by neighbours): [{ text, start, end, embedding }],
  // start and end the window's byte span in the text's UTF-8. options:
  // tokens (required), overlap, and embed()'s.
  async embedDocument(text, model, options = {}) {
    const { tokens, overlap = 0, params = {}, ...rest } = options;
    const res = await this.run('embed', { text }, opParams({ ...rest, params: { ...params, chunk: { tokens, overlap } } },
      model, { pooling: 'pooling', normalize: 'normalize', prompt: 'prompt', promptName: 'prompt_name',
        dimensions: 'dimensions', dtype: 'dtype' }));
    const { y, char_start: start, char_end: end } = res.outputs, raw = Buffer.from(text, 'utf8'), w = y.shape[1];
    return Array.from(start.data, (a, r) => ({ text: raw.subarray(Number(a), Number(end.data[r])).toString('utf8'),
      start: Number(a), end: Number(end.data[r]), embedding: y.data.slice(r * w, (r + 1) * w) }));
  }

  // SPLADE vectors from the sparse encoder `model`: per text { indices,
  // values } (Int32Array, Float32Array; indices increasing), and tokens with
  // returnTokens (needs topK); one object for a single string. options: topK,
  // returnTokens, maxLength, and run()'s.
  async embedSparse(texts, model, options = {}) {
    const res = await this.run('embed_sparse', { text: texts }, opParams(options, model, {
      topK: 'top_k', returnTokens: 'return_tokens', maxLength: 'max_length' }));
    const { indices, values, offsets, tokens } = res.outputs, rows = [];
    for (let r = 0; r + 1 < offsets.data.length; r++) {
      const a = Number(offsets.data[r]), b = Number(offsets.data[r + 1]);
      rows.push({ indices: indices.data.slice(a, b), values: values.data.slice(a, b), ...(tokens ? { tokens: tokens.slice(a, b) } : {}) });
    }
    return typeof texts === 'string' ? rows[0] : rows;
  }

  // The documents scored against query by the cross-encoder `model`,
  // highest first: [{ index, score }] (and text with returnText). options:
  // topN, rawScores, returnText, maxLength, and run()'s.
  async rerank(query, documents, model, options = {}) {
    if (typeof query !== 'string' || !Array.isArray(documents)) {
      throw new TypeError('rerank takes a query string and an array of document strings');
    }
    const res = await this.run('rerank', { query, documents }, opParams(options, model, {
      topN: 'top_n', rawScores: 'raw_scores', returnText: 'return_text', maxLength: 'max_length' }));
    const { scores, order, texts } = res.outputs;
    return Array.from(order.data, (i, n) => ({ index: i, score: scores.data[i], ...(texts ? { text: texts[n] } : {}) }));
  }

  // Labels for each text from the sequence classifier `model`: per text,
  // [{ label, score }] highest first (one array for a single string).
  // options: topK, function (softmax, sigmoid, none), maxLength, and run()'s.
  async classify(texts, model, options = {}) {
    const res = await this.run('classify', { text: texts }, opParams(options, model, {
      topK: 'top_k', function: 'function', maxLength: 'max_length' }));
    const { scores, labels, top } = res.outputs, n = labels.length, rows = [];
    for (let r = 0; r < scores.shape[0]; r++) {
      const row = scores.data.slice(r * n, (r + 1) * n);
      const idx = top ? Array.from(top.data.slice(r * top.shape[1], (r + 1) * top.shape[1]))
        : [...row.keys()].sort((a, b) => row[b] - row[a] || a - b);
      rows.push(idx.map((j) => ({ label: labels[j], score: row[j] })));
    }
    return typeof texts === 'string' ? rows[0] : rows;
  }

  // The stored result of jobId (error or not), or null.
  async result(jobId, queue) {
    const raw = await this.redis.get(commandOptions({ returnBuffers: true }), this.key(`result:${jobId}`, queue));
    return raw === null ? null : decodeResult(raw);
  }

  // Waiters on one queue's reply list, and the loop that pops it.
  async reader(queue) {
    let r = this.readers.get(queue);
    if (!r) {
      r = { key: this.key(`reply:${process.pid}:${crypto.randomUUID()}`, queue), waiters: new Map(), stopped: false };
      r.conn = this.redis.duplicate();
      r.conn.on('error', () => {});
      r.ready = r.conn.connect().then(() => { this.read(r); }, (e) => { this.readers.delete(queue); throw e; });
      this.readers.set(queue, r);
    }
    await r.ready;
    return r;
  }

  async read(r) {
    while (!r.stopped) {
      let batch;
      try {
        const item = await r.conn.blPop(r.key, 5);
        batch = item ? [item.element].concat((await r.conn.lPopCount(r.key, 1000)) || []) : [];
      } catch (e) {   // Redis away: the waiters' own timeouts apply
        if (!r.stopped) await sleep(500);
        continue;
      }
      for (const raw of batch) {
        let res;
        try { res = decodeResult(raw); } catch (e) { continue; }   // not a result: nobody waits for it
        const list = r.waiters.get(String(res.id));
        if (!list) continue;   // its waiter gave up
        const [w, ...rest] = list;
        if (rest.length) r.waiters.set(String(res.id), rest); else r.waiters.delete(String(res.id));
        w.resolve(res);
      }
    }
  }
}

module.exports = { Gpuq, GpuqError, GpuqTimeoutError, Result, Tensor, tensor, decodeResult };
