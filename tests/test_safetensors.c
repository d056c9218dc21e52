/* test_safetensors.c -- the safetensors reader and model loading: valid
 * files, truncation, bad headers, wrong names and shapes. */
#include <unistd.h>

#include "check.h"
#include "models/model.h"
#include "models/index/index.h"
#include "models/mlp/mlp.h"
#include "models/safetensors.h"

static unsigned char image[1 << 16];

/* header JSON + data bytes -> a safetensors image; returns its length */
static size_t build(const char *header, const void *data, size_t data_len) {
    uint64_t h = strlen(header);
    for (int i = 0; i < 8; i++) image[i] = (unsigned char)(h >> (8 * i));
    memcpy(image + 8, header, h);
    memcpy(image + 8 + h, data, data_len);
    return 8 + h + data_len;
}

static void expect_bad(size_t len, const char *why) {
    struct gpuq_safetensors st;
    char err[256] = "";
    CHECK(gpuq_safetensors_parse(&st, image, len, err, sizeof(err)) == -1);
    if (!strstr(err, why)) {
        fprintf(stderr, "  error '%s' lacks '%s'\n", err, why);
        CHECK(0);
    }
    CHECK(st.n_entries == 0 && st.entries == NULL);
}

static void test_parse(void) {
    float data[6] = {1, 2, 3, 4, 5, 6};
    struct gpuq_safetensors st;
    char err[256];
    size_t len = build("{\"__metadata__\":{\"activation\":\"gelu\"},"
                       "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[16,24]}}",
                       data, sizeof(data));
    CHECK(gpuq_safetensors_parse(&st, image, len, err, sizeof(err)) == 0);
    CHECK(st.n_entries == 2);
    const struct gpuq_tensor *w = gpuq_safetensors_get(&st, "w");
    CHECK(w && w->ndim == 2 && w->shape[0] == 2 && w->nbytes == 16);
    float out[4];
    gpuq_tensor_to_f32(w, out);
    CHECK(out[3] == 4.0f);
    CHECK(gpuq_safetensors_get(&st, "b")->dtype == GPUQ_DTYPE_F16);
    CHECK(gpuq_safetensors_get(&st, "c") == NULL);
    CHECK_STR(gpuq_safetensors_meta(&st, "activation"), "gelu");
    CHECK(gpuq_safetensors_meta(&st, "other") == NULL);
    gpuq_safetensors_free(&st);

    /* truncations of a valid file all fail cleanly */
    for (size_t n = 0; n < len; n++) {
        struct gpuq_safetensors t;
        if (gpuq_safetensors_parse(&t, image, n, err, sizeof(err)) == 0) {
            fprintf(stderr, "  truncation to %zu bytes parsed\n", n);
            CHECK(0);
            gpuq_safetensors_free(&t);
        }
    }
    expect_bad(5, "too short");
    build("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", data, 8);
    image[7] = 0x7f;    /* header length far past the end */
    expect_bad(70, "not a safetensors file");
    len = build("{\"w\":", data, 0);
    expect_bad(len, "not a safetensors file: its header is not a JSON object");
    memcpy(image, "<!DOCTYPE html><html>", 21);     /* a page saved in its place */
    expect_bad(21, "not a safetensors file");
    len = build("[1,2]", data, 0);
    expect_bad(len, "not a JSON object");
    len = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data, 8);
    expect_bad(len, "do not match");
    len = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,80]}}", data, 8);
    expect_bad(len, "do not match");
    len = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data, 8);
    expect_bad(len, "bad shape");
    len = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
                "\"data_offsets\":[0,8]}}", data, 8);
    expect_bad(len, "do not match");
    len = build("{\"w\":{\"dtype\":\"C64\",\"shape\":[1],\"data_offsets\":[0,8]}}", data, 8);
    expect_bad(len, "unsupported dtype");
    len = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", data, 8);
    expect_bad(len, "needs dtype");
    len = build("{\"__metadata__\":{\"a\":1}}", data, 0);
    expect_bad(len, "not a string");
}

static const char *write_file(const char *name, size_t len) {
    static char path[256];
    snprintf(path, sizeof(path), "%s/gpuq-test-%d-%s", P_tmpdir, (int)getpid(), name);
    FILE *f = fopen(path, "wb");
    fwrite(image, 1, len, f);
    fclose(f);
    return path;
}

static void expect_model_error(size_t len, const char *why) {
    struct gpuq_model m;
    char err[512] = "";
    const char *path = write_file("bad.safetensors", len);
    CHECK(gpuq_model_load(&m, "m", path, err, sizeof(err)) == -1);
    if (!strstr(err, why)) {
        fprintf(stderr, "  error '%s' lacks '%s'\n", err, why);
        CHECK(0);
    }
    unlink(path);
}

static void test_models(void) {
    float data[2 * 3 + 2 + 1 * 2 + 1];
    for (size_t i = 0; i < sizeof(data) / 4; i++) data[i] = (float)i;
    const char *mlp =
        "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
        "\"layers.1.weight\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[32,40]},"
        "\"layers.1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[40,44]}%s}";
    char header[1024];
    struct gpuq_model m;
    char err[512];
    snprintf(header, sizeof(header), mlp, ",\"__metadata__\":{\"activation\":\"silu\"}");
    const char *path = write_file("mlp.safetensors", build(header, data, sizeof(data)));
    CHECK(gpuq_model_load(&m, "m", path, err, sizeof(err)) == 0);
    const struct gpuq_mlp *net = gpuq_model_mlp(&m);
    CHECK(net && net->n_layers == 2 && net->act == GPUQ_ACT_SILU && !gpuq_model_index(&m));
    CHECK(gpuq_model_in_dim(&m) == 3 && gpuq_model_out_dim(&m) == 1 && net->max_width == 2);
    CHECK(net->layers[1].w[1] == 9.0f && net->layers[0].b[1] == 7.0f);
    gpuq_model_free(&m);
    unlink(path);

    snprintf(header, sizeof(header), mlp, ",\"__metadata__\":{\"activation\":\"swish\"}");
    expect_model_error(build(header, data, sizeof(data)), "unknown activation");
    snprintf(header, sizeof(header), mlp, ",\"extra\":{\"dtype\":\"F32\",\"shape\":[1],"
             "\"data_offsets\":[0,4]}");
    expect_model_error(build(header, data, sizeof(data)), "nothing else");
    /* layer 1 does not take layer 0's width */
    expect_model_error(build("{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                             "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[24,32]},"
                             "\"layers.1.weight\":{\"dtype\":\"F32\",\"shape\":[1,3],\"data_offsets\":[0,12]},"
                             "\"layers.1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[40,44]}}",
                             data, sizeof(data)), "layers.1.weight: dim 1 is 3, want 2");
    expect_model_error(build("{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                             "\"layers.0.bias\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[24,36]}}",
                             data, sizeof(data)), "layers.0.bias: dim 0 is 3, want 2");
    expect_model_error(build("{\"weights\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                             data, sizeof(data)), "neither an mlp");
    expect_model_error(build("{\"embeddings\":{\"dtype\":\"I32\",\"shape\":[2,1],\"data_offsets\":[0,8]}}",
                             data, sizeof(data)), "float");
    expect_model_error(3, "too short");

    path = write_file("index.safetensors",
                      build("{\"embeddings\":{\"dtype\":\"F32\",\"shape\":[3,2],\"data_offsets\":[0,24]}}",
                            data, sizeof(data)));
    CHECK(gpuq_model_load(&m, "ix", path, err, sizeof(err)) == 0);
    const struct gpuq_index *ix = gpuq_model_index(&m);
    CHECK(ix && ix->n_rows == 3 && ix->dim == 2 && ix->embeddings[5] == 5.0f && !gpuq_model_mlp(&m));
    gpuq_model_free(&m);
    unlink(path);

    CHECK(gpuq_model_load(&m, "m", "/nonexistent/file", err, sizeof(err)) == -1);
    CHECK(strstr(err, "No such file") != NULL);
}

int main(void) {
    test_parse();
    test_models();
    return check_done("test_safetensors");
}
