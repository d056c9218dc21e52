/* test_npy.c -- .npy write then parse, and malformed files. */
#define _GNU_SOURCE
#include "check.h"
#include "cli/npy.h"

int main(void) {
    float data[6] = {1, 2, 3, 4, 5, 6};
    struct gpuq_tensor t = {GPUQ_DTYPE_F32, 2, {2, 3}, data, sizeof(data)}, back;
    char buf[512], err[128];
    FILE *f = fmemopen(buf, sizeof(buf), "wb");
    CHECK(gpuq_npy_write(f, &t) == 0);
    long len = ftell(f);
    fclose(f);
    CHECK(len == 128 + 24);     /* header padded to 64 bytes */
    CHECK(gpuq_npy_parse(&back, (unsigned char *)buf, (size_t)len, err, sizeof(err)) == 0);
    CHECK(back.dtype == GPUQ_DTYPE_F32 && back.ndim == 2 && back.shape[1] == 3);
    CHECK(memcmp(back.data, data, sizeof(data)) == 0);
    CHECK(gpuq_npy_parse(&back, (unsigned char *)buf, (size_t)len - 1, err, sizeof(err)) == -1);
    CHECK(gpuq_npy_parse(&back, (unsigned char *)"garbage!!!!", 11, err, sizeof(err)) == -1);
    memcpy(memmem(buf, (size_t)len, "False", 5), "True ", 5);
    CHECK(gpuq_npy_parse(&back, (unsigned char *)buf, (size_t)len, err, sizeof(err)) == -1);
    CHECK(strstr(err, "Fortran") != NULL);
    return check_done("test_npy");
}
