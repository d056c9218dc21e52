/* bench_gemm.cu -- raw cuBLAS, device-resident, no copies and no queue:
 * the card's GEMM peak in f32 and bf16 (f32 sums), and the jobs/s of the
 * mlp GEMMs alone at a worker's batch shape, the figure end-to-end
 * throughput is compared with. The GEMMs are the worker's: transposed
 * weights times untransposed inputs (TN, column-major), on random data
 * (zeros would flatter the clocks). Run by scripts/gpu-check; exits 77
 * without a device.
 *   bench_gemm [D_IN HIDDEN D_OUT BATCH] */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK_CUDA(x)                                                              \
    do {                                                                           \
        cudaError_t e_ = (x);                                                      \
        if (e_ != cudaSuccess) {                                                   \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cudaGetErrorString(e_)); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)
#define CHECK_BLAS(x)                                                              \
    do {                                                                           \
        cublasStatus_t s_ = (x);                                                   \
        if (s_ != CUBLAS_STATUS_SUCCESS) {                                         \
            fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, cublasGetStatusString(s_)); \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

/* n values uniform in [-1, 1) from a hash of their index, as f32 or bf16. */
__global__ void fill(void *p, size_t n, int bf16, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13, h *= 3266489917u, h ^= h >> 16;
        float v = h * (2.0f / 4294967296.0f) - 1.0f;
        if (bf16) ((__nv_bfloat16 *)p)[i] = __float2bfloat16(v);
        else ((float *)p)[i] = v;
    }
}

/* Seconds per call of C [m, n] = A^T . B, A [k, m] and B [k, n] column-major
 * (the worker's Y^T = W . X^T with W and X row-major), dt inputs, f32 out
 * and sums: the best of five timed runs of reps calls. */
static double time_gemm(cublasHandle_t h, int m, int n, int k, cudaDataType_t dt, int reps) {
    size_t es = dt == CUDA_R_32F ? 4 : 2;
    void *a, *b, *c;
    CHECK_CUDA(cudaMalloc(&a, (size_t)m * k * es));
    CHECK_CUDA(cudaMalloc(&b, (size_t)k * n * es));
    CHECK_CUDA(cudaMalloc(&c, (size_t)m * n * 4));
    fill<<<1024, 256>>>(a, (size_t)m * k, es == 2, 1);
    fill<<<1024, 256>>>(b, (size_t)k * n, es == 2, 2);
    CHECK_CUDA(cudaGetLastError());
    float one = 1.0f, zero = 0.0f;
    cudaEvent_t t0, t1;
    CHECK_CUDA(cudaEventCreate(&t0));
    CHECK_CUDA(cudaEventCreate(&t1));
    double best = 1e30;
    for (int run = 0; run < 6; run++) {     /* the first warms up */
        CHECK_CUDA(cudaEventRecord(t0));
        for (int i = 0; i < reps; i++)
            CHECK_BLAS(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &one, a, dt, k, b, dt, k,
                                    &zero, c, CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        CHECK_CUDA(cudaEventRecord(t1));
        CHECK_CUDA(cudaEventSynchronize(t1));
        float ms;
        CHECK_CUDA(cudaEventElapsedTime(&ms, t0, t1));
        if (run > 0 && ms / 1e3 / reps < best) best = ms / 1e3 / reps;
    }
    cudaFree(a), cudaFree(b), cudaFree(c);
    return best;
}

int main(int argc, char **argv) {
    int n_dev = 0;
    if (cudaGetDeviceCount(&n_dev) != cudaSuccess || n_dev == 0) {
        printf("bench_gemm: SKIPPED: no CUDA device\n");
        return 77;
    }
    int d_in = 256, hidden = 1024, d_out = 256, batch = 256;
    if (argc == 5) d_in = atoi(argv[1]), hidden = atoi(argv[2]), d_out = atoi(argv[3]), batch = atoi(argv[4]);
    cublasHandle_t h;
    CHECK_BLAS(cublasCreate(&h));
    CHECK_BLAS(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));     /* f32 stays f32 */
    cudaDeviceProp prop;
    CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s\n", prop.name);
    const int big = 8192;
    const char *names[] = {"f32", "bf16"};
    cudaDataType_t types[] = {CUDA_R_32F, CUDA_R_16BF};
    for (int t = 0; t < 2; t++) {
        double s = time_gemm(h, big, big, big, types[t], 5);
        printf("peak %s: %dx%dx%d TN GEMM, random data: %.1f TFLOP/s\n", names[t], big, big, big,
               2.0 * big * big * big / s / 1e12);
    }
    for (int t = 0; t < 2; t++) {
        /* one batch: [batch, d_in] -> hidden -> d_out, as the worker's GEMMs */
        double s = time_gemm(h, hidden, batch, d_in, types[t], 200) +
                   time_gemm(h, d_out, batch, hidden, types[t], 200);
        double flops = 2.0 * batch * ((double)d_in * hidden + (double)hidden * d_out);
        printf("mlp GEMMs %s, %d -> %d -> %d, batch %d: %.0f jobs/s, %.1f TFLOP/s\n", names[t], d_in,
               hidden, d_out, batch, batch / s, flops / s / 1e12);
    }
    cublasDestroy(h);
    return 0;
}
