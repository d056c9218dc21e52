/* npy.c -- the .npy format, version 1 to 3, little-endian C order only. */
#include "cli/npy.h"

#include <stdlib.h>
#include <string.h>

static const struct { const char *descr; enum gpuq_dtype dt; } descrs[] = {
    {"<f4", GPUQ_DTYPE_F32}, {"<f2", GPUQ_DTYPE_F16}, {"<f8", GPUQ_DTYPE_F64},
    {"|i1", GPUQ_DTYPE_I8},  {"|u1", GPUQ_DTYPE_U8},  {"<i4", GPUQ_DTYPE_I32},
    {"<i8", GPUQ_DTYPE_I64},
};

/* Finds 'key': in the header dict and returns what follows, or NULL. */
static const char *field(const char *h, const char *key) {
    char pat[32];
    snprintf(pat, sizeof(pat), "'%s':", key);
    const char *p = strstr(h, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    return p;
}

int gpuq_npy_parse(struct gpuq_tensor *t, const unsigned char *buf, size_t len, char *err,
                   size_t errlen) {
    char header[4096];
    memset(t, 0, sizeof(*t));
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        snprintf(err, errlen, "not a .npy file");
        return -1;
    }
    size_t hlen, start = buf[6] == 1 ? 10 : 12;
    if (buf[6] == 1) hlen = buf[8] | (size_t)buf[9] << 8;
    else if (len >= 12) hlen = buf[8] | (size_t)buf[9] << 8 | (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    else hlen = SIZE_MAX;
    if (hlen >= sizeof(header) || hlen > len - start) {
        snprintf(err, errlen, "bad .npy header length");
        return -1;
    }
    memcpy(header, buf + start, hlen);
    header[hlen] = '\0';
    const char *d = field(header, "descr"), *fo = field(header, "fortran_order"),
               *sh = field(header, "shape");
    if (!d || !fo || !sh || *sh != '(') {
        snprintf(err, errlen, "bad .npy header");
        return -1;
    }
    int found = -1;
    for (size_t i = 0; i < sizeof(descrs) / sizeof(descrs[0]); i++)
        if (strncmp(d + 1, descrs[i].descr, 3) == 0 && d[4] == d[0]) found = (int)i;
    if (found < 0) {
        snprintf(err, errlen, ".npy dtype %.8s is not one gpuq takes", d);
        return -1;
    }
    if (strncmp(fo, "False", 5) != 0) {
        snprintf(err, errlen, ".npy array is in Fortran order; save it C-contiguous");
        return -1;
    }
    t->dtype = descrs[found].dt;
    for (const char *p = sh + 1; *p && *p != ')';) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || v < 0 || t->ndim == GPUQ_MAX_DIMS) {
            snprintf(err, errlen, "bad .npy shape");
            return -1;
        }
        t->shape[t->ndim++] = v;
        p = end;
        while (*p == ',' || *p == ' ') p++;
    }
    int64_t numel = gpuq_tensor_numel(t);
    size_t off = start + hlen;
    if (numel < 0 || (uint64_t)numel * gpuq_dtype_size(t->dtype) != len - off) {
        snprintf(err, errlen, ".npy data size does not match its shape");
        return -1;
    }
    t->data = buf + off;
    t->nbytes = len - off;
    return 0;
}

int gpuq_npy_write(FILE *f, const struct gpuq_tensor *t) {
    const char *descr = "<f4";
    for (size_t i = 0; i < sizeof(descrs) / sizeof(descrs[0]); i++)
        if (descrs[i].dt == t->dtype) descr = descrs[i].descr;
    char shape[256] = "", header[512];
    for (int i = 0; i < t->ndim; i++)
        snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), "%lld,%s",
                 (long long)t->shape[i], i + 1 < t->ndim ? " " : "");
    int n = snprintf(header, sizeof(header), "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }",
                     descr, shape);
    int pad = 64 - (10 + n + 1) % 64;
    if (pad == 64) pad = 0;
    memset(header + n, ' ', (size_t)pad);
    header[n + pad] = '\n';
    size_t hlen = (size_t)(n + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                             (unsigned char)(hlen >> 8)};
    if (fwrite(pre, 1, 10, f) != 10 || fwrite(header, 1, hlen, f) != hlen ||
        fwrite(t->data, 1, t->nbytes, f) != t->nbytes)
        return -1;
    return 0;
}
