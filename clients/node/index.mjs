// ES module entry: the same client as gpuq.js.
import gpuq from './gpuq.js';

export const { Gpuq, GpuqError, GpuqTimeoutError, Result, Tensor, tensor, decodeResult } = gpuq;
export default gpuq;
