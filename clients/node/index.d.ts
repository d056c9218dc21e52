// Types for gpuq-client (gpuq.js).

export type DType = 'f32' | 'f16' | 'bf16' | 'f64' | 'i8' | 'u8' | 'i32' | 'i64';
export type TypedArray = Float32Array | Float64Array | Int8Array | Uint8Array | Int32Array | BigInt64Array
  | Uint16Array;

/** A tensor; f16 and bf16 travel as raw 16-bit words. JSON.stringify writes data as numbers. */
export class Tensor {
  constructor(dtype: DType, shape: number[], data: TypedArray);
  dtype: DType;
  shape: number[];
  data: TypedArray;
  toJSON(): { dtype: DType; shape: number[]; data: number[] };
}

export function tensor(dtype: DType, shape: number[], values: TypedArray | ArrayLike<number> | ArrayLike<bigint>): Tensor;

export interface ErrorInfo { code: string; message: string }
export interface Timing { queue_us?: number; compute_us?: number; total_us?: number; batch_size?: number }

export class Result {
  constructor(raw: Record<string, unknown>);
  raw: Record<string, unknown>;
  id: string;
  status: 'ok' | 'error';
  /** Tensors; a text output (classify's labels, rerank's texts) is an array of strings. */
  outputs: Record<string, Tensor | string[]>;
  error?: ErrorInfo;
  meta?: unknown;
  timing: Timing;
  worker?: string;
  readonly ok: boolean;
  /** This result, or throws GpuqError when it is an error result. */
  raiseForError(): this;
  toJSON(): Record<string, unknown>;
}

/** An error result; code is one of the protocol's error codes. */
export class GpuqError extends Error {
  code: string;
  result?: Result;
}

/** No result within the time asked for; the job may still run. */
export class GpuqTimeoutError extends Error {}

export interface JobOptions {
  model?: string;
  params?: Record<string, unknown>;
  id?: string;
  callback?: string;
  priority?: number;
  timeoutMs?: number;
  deadlineMs?: number;
  /** seconds to keep the result key; run() sends 0 unless given */
  resultTtl?: number;
  meta?: unknown;
}

export interface EnqueueOptions extends JobOptions { queue?: string; replyTo?: string }
export interface RunOptions extends JobOptions { queue?: string; /** seconds to wait (30) */ timeout?: number }

/** Passed to Node's tls.connect (its ConnectionOptions): PEM contents, not paths. */
export interface TlsOptions {
  ca?: string | Uint8Array | Array<string | Uint8Array>;
  cert?: string | Uint8Array | Array<string | Uint8Array>;
  key?: string | Uint8Array | Array<string | Uint8Array>;
  rejectUnauthorized?: boolean;
  servername?: string;
  [option: string]: unknown;
}

export interface GpuqOptions {
  url?: string; prefix?: string; queue?: string; cluster?: boolean;
  /** rediss:// only: more of Node's tls.connect options, say { ca, cert, key } as PEM contents */
  tls?: TlsOptions;
}
/** Tensors, or text (a string or an array of strings) for embed. */
export type Inputs = Record<string, Tensor | { dtype: DType; shape: number[]; data: TypedArray } | string | string[]>;
export interface SparseOptions extends RunOptions {
  topK?: number;
  returnTokens?: boolean;
  maxLength?: number;
}

export interface SparseRow { indices: Int32Array; values: Float32Array; tokens?: string[] }

export interface RerankOptions extends RunOptions {
  topN?: number;
  rawScores?: boolean;
  returnText?: boolean;
  maxLength?: number;
}

export interface ClassifyOptions extends RunOptions {
  topK?: number;
  function?: 'softmax' | 'sigmoid' | 'none';
  maxLength?: number;
}

export interface EmbedOptions extends RunOptions {
  pooling?: 'mean' | 'cls';
  normalize?: boolean;
  maxLength?: number;
  /** A string put before every text, or one of the model folder's prompts by name. */
  prompt?: string;
  promptName?: string;
  /** false: a text longer than maxLength is an error instead of being cut. */
  truncate?: boolean;
  truncationDirection?: 'right' | 'left';
  /** Matryoshka: the first N components, normalized again when the model normalizes. */
  dimensions?: number;
  /** f32 (Float32Array), f16 (Uint16Array words), int8/binary (Int8Array), uint8/ubinary (Uint8Array). */
  dtype?: 'f32' | 'f16' | 'int8' | 'uint8' | 'binary' | 'ubinary';
  /** int8/uint8: the minimums, then the maximums, of each component. */
  ranges?: number[];
}

export class Gpuq {
  constructor(options?: GpuqOptions);
  prefix: string;
  queue: string;
  /** Rejects when Redis cannot be reached. */
  connect(): Promise<this>;
  close(): Promise<void>;
  key(suffix: string, queue?: string): string;
  /** Resolves to the job's stream entry id. */
  enqueue(op: string, inputs: Inputs, options?: EnqueueOptions): Promise<string>;
  /** The next result on a reply list of your own, error or not. */
  wait(replyTo: string, timeout?: number): Promise<Result>;
  /** Rejects with GpuqError on an error result, GpuqTimeoutError when none comes in time. */
  run(op: string, inputs: Inputs, options?: RunOptions): Promise<Result>;
  /** A long text in overlapping token windows: each window's text, UTF-8 byte span and embedding. */
  embedDocument(text: string, model: string, options: EmbedOptions & { tokens: number; overlap?: number }): Promise<Array<{ text: string; start: number; end: number; embedding: Float32Array }>>;
  /** SPLADE vectors: per text its nonzero indices (increasing) and values; one object for a single string. */
  embedSparse(texts: string, model: string, options?: SparseOptions): Promise<SparseRow>;
  embedSparse(texts: string[], model: string, options?: SparseOptions): Promise<SparseRow[]>;
  /** The documents scored against query by a cross-encoder, highest first. */
  rerank(query: string, documents: string[], model: string, options?: RerankOptions): Promise<Array<{ index: number; score: number; text?: string }>>;
  /** Labels for each text from a sequence classifier, highest first; one array for a single string. */
  classify(texts: string, model: string, options?: ClassifyOptions): Promise<Array<{ label: string; score: number }>>;
  classify(texts: string[], model: string, options?: ClassifyOptions): Promise<Array<Array<{ label: string; score: number }>>>;
  /** Sentence embeddings: one typed array per text (Float32Array unless dtype says otherwise), or one for a single string. */
  embed(texts: string, model: string, options?: EmbedOptions): Promise<Float32Array | Int8Array | Uint8Array | Uint16Array>;
  embed(texts: string[], model: string, options?: EmbedOptions): Promise<Array<Float32Array | Int8Array | Uint8Array | Uint16Array>>;
  /** The stored result, error or not, or null. */
  result(jobId: string, queue?: string): Promise<Result | null>;
}

export function decodeResult(raw: string | Buffer): Result;
