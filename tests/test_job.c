/* test_job.c -- the job codec on valid and every kind of malformed input. */
#include <msgpack.h>

#include "check.h"
#include "queue/job.h"

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void reset(void) {
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}

static void str(const char *s) { msgpack_pack_str_with_body(&pk, s, strlen(s)); }

/* tensor {dtype, shape, data} with data_len bytes of zeros */
static void tensor(const char *dtype, int ndim, const int64_t *shape, size_t data_len) {
    static char zeros[4096];
    msgpack_pack_map(&pk, 3);
    str("dtype"), str(dtype);
    str("shape"), msgpack_pack_array(&pk, (size_t)ndim);
    for (int i = 0; i < ndim; i++) msgpack_pack_int64(&pk, shape[i]);
    str("data"), msgpack_pack_bin_with_body(&pk, zeros, data_len);
}

/* {op: matmul, inputs: {a: [2,3] f32, b: <as given>}, id: j1, reply_to: r, meta: 7} */
static void matmul_job(const char *b_dtype, int b_ndim, const int64_t *b_shape, size_t b_len) {
    int64_t a_shape[2] = {2, 3};
    reset();
    msgpack_pack_map(&pk, 5);
    str("op"), str("matmul");
    str("id"), str("j1");
    str("reply_to"), str("r");
    str("meta"), msgpack_pack_int(&pk, 7);
    str("inputs"), msgpack_pack_map(&pk, 2);
    str("a"), tensor("f32", 2, a_shape, 24);
    str("b"), tensor(b_dtype, b_ndim, b_shape, b_len);
}

static enum gpuq_decode decode(struct gpuq_job *job) {
    return gpuq_job_decode(job, sb.data, sb.size, NULL);
}

static void test_valid(void) {
    struct gpuq_job job;
    int64_t b_shape[2] = {3, 4};
    matmul_job("f16", 2, b_shape, 24);
    CHECK(decode(&job) == GPUQ_DECODE_OK);
    CHECK(job.op == GPUQ_OP_MATMUL);
    CHECK(job.n_inputs == 2);
    CHECK(job.id.len == 2 && memcmp(job.id.ptr, "j1", 2) == 0);
    CHECK(job.reply_to.len == 1);
    CHECK(job.meta && job.meta->type == MSGPACK_OBJECT_POSITIVE_INTEGER);
    const struct gpuq_tensor *b = gpuq_job_input(&job, "b");
    CHECK(b && b->dtype == GPUQ_DTYPE_F16 && b->ndim == 2 && b->shape[1] == 4 && b->nbytes == 24);
    CHECK(gpuq_job_input(&job, "c") == NULL);
    CHECK(job.result_ttl == -1 && job.deadline_ms == 0);
    gpuq_job_free(&job);

    /* every optional field, params read back typed */
    reset();
    msgpack_pack_map(&pk, 8);
    str("op"), str("mlp");
    str("model"), str("m");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("params"), msgpack_pack_map(&pk, 3);
    str("alpha"), msgpack_pack_double(&pk, 0.5);
    str("k"), msgpack_pack_int(&pk, 3);
    str("trans_a"), msgpack_pack_true(&pk);
    str("deadline_ms"), msgpack_pack_int64(&pk, 1700000000000LL);
    str("timeout_ms"), msgpack_pack_int(&pk, 50);
    str("priority"), msgpack_pack_int(&pk, -2);
    str("result_ttl"), msgpack_pack_int(&pk, 0);
    CHECK(decode(&job) == GPUQ_DECODE_OK);
    double alpha = 1;
    int64_t k = 0;
    int ta = 0;
    CHECK(gpuq_job_param_f64(&job, "alpha", &alpha) == 1 && alpha == 0.5);
    CHECK(gpuq_job_param_i64(&job, "k", &k) == 1 && k == 3);
    CHECK(gpuq_job_param_f64(&job, "k", &alpha) == 1 && alpha == 3.0);
    CHECK(gpuq_job_param_bool(&job, "trans_a", &ta) == 1 && ta == 1);
    CHECK(gpuq_job_param_bool(&job, "absent", &ta) == 0);
    CHECK(job.deadline_ms == 1700000000000LL && job.timeout_ms == 50 && job.priority == -2);
    CHECK(job.result_ttl == 0);
    CHECK(job.model.len == 1);
    CHECK(gpuq_job_param_bool(&job, "alpha", &ta) == -1 && job.err == GPUQ_ERR_BAD_REQUEST);
    gpuq_job_free(&job);
}

/* A job that decodes to a map but is invalid: error code and the message part. */
static void expect_invalid(enum gpuq_err code, const char *msg_part) {
    struct gpuq_job job;
    enum gpuq_decode d = decode(&job);
    CHECK(d == GPUQ_DECODE_INVALID);
    CHECK(job.err == code);
    if (!strstr(job.errmsg, msg_part)) {
        fprintf(stderr, "  message '%s' lacks '%s'\n", job.errmsg, msg_part);
        CHECK(0);
    }
    gpuq_job_free(&job);
}

static void test_invalid_tensors(void) {
    int64_t s34[2] = {3, 4}, neg[2] = {-3, 4}, huge[3] = {1LL << 40, 1LL << 40, 1LL << 40};
    int64_t many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1}, big[2] = {1 << 20, 1 << 20};
    matmul_job("f64x", 2, s34, 48);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "unknown dtype");
    matmul_job("f32", 2, s34, 47);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "data has 47 bytes");
    matmul_job("f32", 2, neg, 48);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "non-negative");
    matmul_job("f32", 3, huge, 16);     /* overflowing product */
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "shape and dtype");
    matmul_job("f32", 2, big, 16);      /* a huge claimed shape with tiny data */
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "shape and dtype");
    matmul_job("f32", 9, many, 4);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "dims");

    /* data as str, shape as map, tensor as array, extra tensor key */
    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("matmul");
    str("inputs"), msgpack_pack_map(&pk, 1);
    str("a"), msgpack_pack_map(&pk, 3);
    str("dtype"), str("f32");
    str("shape"), msgpack_pack_array(&pk, 1), msgpack_pack_int(&pk, 1);
    str("data"), str("abcd");
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "data must be bin");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("matmul");
    str("inputs"), msgpack_pack_map(&pk, 1);
    str("a"), msgpack_pack_int(&pk, 7);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "not a tensor map or text");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("matmul");
    str("inputs"), msgpack_pack_map(&pk, 1);
    str("a"), msgpack_pack_map(&pk, 4);
    str("dtype"), str("f32");
    str("shape"), msgpack_pack_array(&pk, 0);
    str("data"), msgpack_pack_bin_with_body(&pk, "abcd", 4);
    str("strides"), msgpack_pack_nil(&pk);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "unknown tensor key");
}

/* Text inputs: a str or a non-empty array of str, each at most
 * GPUQ_MAX_DOC_BYTES; anything else is bad_request. */
static void text_job(int n, const char *const *texts, size_t long_len) {
    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("embed");
    str("inputs"), msgpack_pack_map(&pk, 1);
    str("text");
    if (n < 0) {
        str(texts[0]);
        return;
    }
    msgpack_pack_array(&pk, (size_t)n + (long_len > 0));
    for (int i = 0; i < n; i++) {
        if (texts[i]) str(texts[i]);
        else msgpack_pack_int(&pk, i);
    }
    if (long_len) {
        char *big = calloc(long_len, 1);
        msgpack_pack_str_with_body(&pk, big, long_len);
        free(big);
    }
}

static void test_text_inputs(void) {
    struct gpuq_job job;
    const char *texts[] = {"one", "", "caf\xc3\xa9 \xff"}, *with_int[] = {"a", NULL};
    text_job(3, texts, GPUQ_MAX_DOC_BYTES);
    CHECK(decode(&job) == GPUQ_DECODE_OK);
    const struct gpuq_input *in = gpuq_job_find(&job, "text");
    CHECK(in && in->text && in->n_texts == 4 && !gpuq_job_input(&job, "text"));
    CHECK(gpuq_input_text(in, 1).len == 0 && gpuq_input_text(in, 3).len == GPUQ_MAX_DOC_BYTES);
    CHECK(gpuq_input_text(in, 2).len == 7 && !memcmp(gpuq_input_text(in, 2).ptr, texts[2], 7));
    gpuq_job_free(&job);
    text_job(-1, texts, 0);
    CHECK(decode(&job) == GPUQ_DECODE_OK);
    in = gpuq_job_find(&job, "text");
    CHECK(in->n_texts == 1 && gpuq_input_text(in, 0).len == 3);
    gpuq_job_free(&job);
    text_job(0, texts, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "an empty list of texts");
    text_job(2, with_int, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "text 1 is not a string");
    text_job(1, texts, GPUQ_MAX_DOC_BYTES + 1);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "text 1 has 8388609 bytes, more than 8388608");
}

static void test_invalid_fields(void) {
    reset();
    msgpack_pack_map(&pk, 1);
    str("inputs"), msgpack_pack_map(&pk, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "missing op");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("fft");
    str("inputs"), msgpack_pack_map(&pk, 0);
    expect_invalid(GPUQ_ERR_UNKNOWN_OP, "fft");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), msgpack_pack_int(&pk, 1);
    str("inputs"), msgpack_pack_map(&pk, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "op must be a string");

    reset();
    msgpack_pack_map(&pk, 1);
    str("op"), str("mlp");
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "missing inputs");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_array(&pk, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "inputs must be a map");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("deadline_ms"), str("soon");
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "deadline_ms");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("result_ttl"), msgpack_pack_int(&pk, -1);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "result_ttl");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("replyto"), str("x");
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "unknown job key 'replyto'");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("params"), msgpack_pack_int(&pk, 3);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "params must be a map");

    /* an invalid job still carries what its error result needs */
    struct gpuq_job job;
    char long_id[600];
    memset(long_id, 'x', sizeof(long_id));
    reset();
    msgpack_pack_map(&pk, 4);
    str("id"), str("keep-me");
    str("reply_to"), str("list");
    str("op"), str("nope");
    str("inputs"), msgpack_pack_map(&pk, 0);
    CHECK(decode(&job) == GPUQ_DECODE_INVALID);
    CHECK(job.id.len == 7 && job.reply_to.len == 4 && job.err == GPUQ_ERR_UNKNOWN_OP);
    gpuq_job_free(&job);

    reset();
    msgpack_pack_map(&pk, 3);
    str("id"), msgpack_pack_str_with_body(&pk, long_id, sizeof(long_id));
    str("op"), str("mlp");
    str("inputs"), msgpack_pack_map(&pk, 0);
    CHECK(decode(&job) == GPUQ_DECODE_INVALID);
    CHECK(job.id.ptr == NULL && strstr(job.errmsg, "id longer"));
    gpuq_job_free(&job);
}

static void expect_undecodable(const char *buf, size_t len) {
    struct gpuq_job job;
    CHECK(gpuq_job_decode(&job, buf, len, NULL) == GPUQ_DECODE_UNDECODABLE);
    CHECK(job.err == GPUQ_ERR_BAD_REQUEST);
    gpuq_job_free(&job);
}

static void test_undecodable(void) {
    expect_undecodable("", 0);
    expect_undecodable("hello world", 11);
    expect_undecodable("\xc1", 1);                  /* never-used byte */
    expect_undecodable("\x92\x01\x02", 3);          /* an array, not a map */
    expect_undecodable("\x81\xa2op", 4);            /* truncated map */
    expect_undecodable("\x80\x80", 2);              /* trailing bytes */
    expect_undecodable("\xdd\xff\xff\xff\xff", 5);  /* claims 4G elements */
    expect_undecodable("\xdf\x10\x00\x00\x00\x01", 6);  /* claims 256M pairs */
    expect_undecodable("\xc6\xff\xff\xff\xf0", 5);  /* bin longer than the message */
    /* nested containers deeper than msgpack-c's stack */
    char deep[200];
    memset(deep, 0x91, sizeof(deep));
    deep[sizeof(deep) - 1] = 0x01;
    expect_undecodable(deep, sizeof(deep));
    /* every truncation of a valid job is rejected, never crashes */
    int64_t s[2] = {3, 4};
    matmul_job("f32", 2, s, 48);
    for (size_t n = 0; n < sb.size; n++) expect_undecodable(sb.data, n);
}

static void test_result(void) {
    float data[2] = {1.5f, -2.0f};
    struct gpuq_output out = {.name = "y", .t = {GPUQ_DTYPE_F32, 2, {1, 2}, data, sizeof(data)}};
    msgpack_object meta = {.type = MSGPACK_OBJECT_BOOLEAN, .via.boolean = true};
    struct gpuq_result r = {.id = {"abc", 3}, .outputs = &out, .n_outputs = 1, .meta = &meta,
                            .queue_us = 10, .compute_us = 20, .total_us = 40, .batch_size = 7,
                            .worker = "w1"};
    reset();
    CHECK(gpuq_result_encode(&sb, &r) == 0);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    CHECK(off == sb.size && u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 7);
    char text[512];
    msgpack_object_print_buffer(text, sizeof(text), u.data);
    CHECK(strstr(text, "\"status\"=>\"ok\"") != NULL);
    CHECK(strstr(text, "\"batch_size\"=>7") != NULL);
    CHECK(strstr(text, "\"meta\"=>true") != NULL);
    CHECK(strstr(text, "\"shape\"=>[1, 2]") != NULL);
    msgpack_unpacked_destroy(&u);

    r.err = GPUQ_ERR_SHAPE_MISMATCH;
    r.errmsg = "k differs";
    reset();
    CHECK(gpuq_result_encode(&sb, &r) == 0);
    msgpack_unpacked_init(&u);
    off = 0;
    CHECK(msgpack_unpack_next(&u, sb.data, sb.size, &off) == MSGPACK_UNPACK_SUCCESS);
    msgpack_object_print_buffer(text, sizeof(text), u.data);
    CHECK(strstr(text, "\"code\"=>\"shape_mismatch\"") != NULL);
    CHECK(strstr(text, "\"outputs\"=>{}") != NULL);
    msgpack_unpacked_destroy(&u);
}

static void test_dtypes(void) {
    CHECK(gpuq_f16_to_f32(0x3c00) == 1.0f);
    CHECK(gpuq_f16_to_f32(0xc000) == -2.0f);
    CHECK(gpuq_f16_to_f32(0x0001) == 5.9604644775390625e-08f);   /* smallest subnormal */
    CHECK(isinf(gpuq_f16_to_f32(0x7c00)));
    CHECK(gpuq_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(gpuq_dtype_from_name("bf16", 4) == GPUQ_DTYPE_BF16);
    CHECK(gpuq_dtype_from_name("f3", 2) == -1);
    unsigned char raw[9] = {0, 0, 0, 0x3c, 0, 0xc0, 0, 0, 0};   /* unaligned f16 data at +1 */
    struct gpuq_tensor t = {GPUQ_DTYPE_F16, 1, {2}, raw + 2, 4};
    float out[2];
    gpuq_tensor_to_f32(&t, out);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
}

/* {op: softmax, inputs: {x0..x7}} with "inputs" twice: 16 tensors for 8 slots */
static void twice_inputs_job(void) {
    int64_t shape[1] = {1};
    char name[4];
    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("softmax");
    for (int twice = 0; twice < 2; twice++) {
        str("inputs"), msgpack_pack_map(&pk, GPUQ_MAX_INPUTS);
        for (int i = 0; i < GPUQ_MAX_INPUTS; i++) {
            snprintf(name, sizeof(name), "x%d", i);
            str(name), tensor("f32", 1, shape, 4);
        }
    }
}

static void test_repeated_keys(void) {
    int64_t shape[1] = {1};
    twice_inputs_job();
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "key 'inputs' repeated in the job");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("softmax");
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 0);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "key 'op' repeated in the job");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 2);
    str("x"), tensor("f32", 1, shape, 4);
    str("x"), tensor("f32", 1, shape, 4);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "key 'x' repeated in inputs");

    reset();
    msgpack_pack_map(&pk, 2);
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 1);
    str("x"), msgpack_pack_map(&pk, 4);
    str("dtype"), str("f32");
    str("shape"), msgpack_pack_array(&pk, 1), msgpack_pack_int(&pk, 1);
    str("data"), msgpack_pack_bin_with_body(&pk, "abcd", 4);
    str("dtype"), str("i8");
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "key 'dtype' repeated in a tensor");

    /* a large params map goes the sorted way; its repeat is the 30th key */
    char key[16];
    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("params"), msgpack_pack_map(&pk, 40);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "p%d", i == 30 ? 3 : i);
        str(key), msgpack_pack_int(&pk, i);
    }
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "key 'p3' repeated in params");

    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("params"), msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 1), msgpack_pack_int(&pk, 2);
    expect_invalid(GPUQ_ERR_BAD_REQUEST, "params keys must be strings");
}

/* ids and reply lists are UTF-8: a lone continuation byte, a truncated
 * sequence or an overlong encoding is refused; real UTF-8 is taken */
static void test_utf8(void) {
    static const char *bad[] = {"a\x80", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80"};
    for (int i = 0; i < 4; i++) {
        struct gpuq_job job;
        reset();
        msgpack_pack_map(&pk, 3);
        str("op"), str("softmax");
        str("inputs"), msgpack_pack_map(&pk, 0);
        str("id"), str(bad[i]);
        CHECK(decode(&job) == GPUQ_DECODE_INVALID);
        CHECK(job.err == GPUQ_ERR_BAD_REQUEST && strstr(job.errmsg, "not UTF-8") && !job.id.ptr);
        gpuq_job_free(&job);
    }
    struct gpuq_job job;
    reset();
    msgpack_pack_map(&pk, 3);
    str("op"), str("softmax");
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("id"), str("caf\xc3\xa9-\xe6\x97\xa5-\xf0\x9f\x98\x80");
    CHECK(decode(&job) == GPUQ_DECODE_OK && job.id.len == 14);
    gpuq_job_free(&job);
}

/* ids and reply lists name Redis keys: no NUL, CR, LF or other control byte */
static void test_control_characters(void) {
    static const char *bad[] = {"a\0x", "a\r\nX-Injected: 1", "tab\there", "del\x7f"};
    static const size_t len[] = {3, 16, 8, 4};
    const char *fields[] = {"id", "reply_to", "callback"};
    for (int f = 0; f < 3; f++)
        for (int i = 0; i < 4; i++) {
            struct gpuq_job job;
            char url[64];
            int n = snprintf(url, sizeof(url), "%s", f == 2 ? "http://h/" : "");
            memcpy(url + n, bad[i], len[i]);
            reset();
            msgpack_pack_map(&pk, 3);
            str("op"), str("softmax");
            str("inputs"), msgpack_pack_map(&pk, 0);
            str(fields[f]), msgpack_pack_str_with_body(&pk, url, (size_t)n + len[i]);
            CHECK(decode(&job) == GPUQ_DECODE_INVALID);
            CHECK(job.err == GPUQ_ERR_BAD_REQUEST && strstr(job.errmsg, "control character"));
            CHECK(!job.id.ptr && !job.reply_to.ptr && !job.callback.ptr);   /* nothing built from it */
            gpuq_job_free(&job);
        }
}

/* reply_to and callback_format are validated as the job is decoded: a
 * reply_to the rules reserve is refused and never kept, even on a job
 * wrong for another reason; callback_format is json or msgpack. */
static int reserve_list(const void *ctx, struct gpuq_str key) {
    (void)ctx;
    return key.len == 4 && memcmp(key.ptr, "list", 4) == 0;
}

/* {op: <op>, inputs: {}, reply_to: <reply_to>, params: {callback_format: <fmt>}} */
static enum gpuq_decode decode_reply(struct gpuq_job *job, const char *op, const char *reply_to,
                                     const char *fmt) {
    static const struct gpuq_job_rules rules = {reserve_list, NULL};
    reset();
    msgpack_pack_map(&pk, 4);
    str("op"), str(op);
    str("inputs"), msgpack_pack_map(&pk, 0);
    str("reply_to"), str(reply_to);
    str("params"), msgpack_pack_map(&pk, 1);
    str("callback_format"), str(fmt);
    return gpuq_job_decode(job, sb.data, sb.size, &rules);
}

static void test_reply_rules(void) {
    struct gpuq_job job;
    CHECK(decode_reply(&job, "mlp", "mine", "msgpack") == GPUQ_DECODE_OK);
    CHECK(job.reply_to.len == 4 && job.callback_msgpack == 1);
    gpuq_job_free(&job);
    CHECK(decode_reply(&job, "mlp", "mine", "json") == GPUQ_DECODE_OK && job.callback_msgpack == 0);
    gpuq_job_free(&job);
    CHECK(decode_reply(&job, "mlp", "list", "json") == GPUQ_DECODE_INVALID);
    CHECK(job.err == GPUQ_ERR_BAD_REQUEST && strstr(job.errmsg, "own keys") && !job.reply_to.ptr);
    gpuq_job_free(&job);
    CHECK(decode_reply(&job, "nope", "list", "json") == GPUQ_DECODE_INVALID);
    CHECK(job.err == GPUQ_ERR_UNKNOWN_OP && !job.reply_to.ptr);     /* the first error told, no push */
    gpuq_job_free(&job);
    CHECK(decode_reply(&job, "mlp", "mine", "xml") == GPUQ_DECODE_INVALID);
    CHECK(job.err == GPUQ_ERR_BAD_REQUEST && strstr(job.errmsg, "callback_format") && job.reply_to.len == 4);
    gpuq_job_free(&job);
    CHECK(decode_reply(&job, "nope", "mine", "msgpack") == GPUQ_DECODE_INVALID);
    CHECK(job.err == GPUQ_ERR_UNKNOWN_OP && job.callback_msgpack == 1);  /* its error POSTed as asked */
    gpuq_job_free(&job);
}

int main(void) {
    msgpack_sbuffer_init(&sb);
    test_text_inputs();
    test_valid();
    test_invalid_tensors();
    test_invalid_fields();
    test_undecodable();
    test_repeated_keys();
    test_control_characters();
    test_utf8();
    test_result();
    test_dtypes();
    test_reply_rules();
    msgpack_sbuffer_destroy(&sb);
    return check_done("test_job");
}
