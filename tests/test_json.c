/* test_json.c -- msgpack to JSON text: every value converts, nothing is lost. */
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>

#include "check.h"
#include "queue/json.h"

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void begin(void) {
    msgpack_sbuffer_clear(&sb);
}

/* Converts what was packed since begin() and compares with want. */
static void expect(const char *want, int line) {
    size_t n = 0;
    char *got = gpuq_json_from_msgpack(sb.data, sb.size, &n);
    check_count++;
    if (!got || strcmp(got, want) != 0 || n != strlen(want)) {
        check_failures++;
        fprintf(stderr, "line %d: got %s, want %s\n", line, got ? got : "(null)", want);
    }
    free(got);
}

#define EXPECT(want) expect(want, __LINE__)

static void str(const char *s) {
    msgpack_pack_str_with_body(&pk, s, strlen(s));
}

int main(void) {
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    /* integer, bin, nil, bool, float, array and ext keys: each its JSON text */
    begin();
    msgpack_pack_map(&pk, 7);
    msgpack_pack_int(&pk, 1), str("one");
    msgpack_pack_int(&pk, -2), msgpack_pack_true(&pk);
    msgpack_pack_bin_with_body(&pk, "\x01\x02", 2), msgpack_pack_nil(&pk);
    msgpack_pack_nil(&pk), msgpack_pack_int(&pk, 0);
    msgpack_pack_true(&pk), msgpack_pack_int(&pk, 0);
    msgpack_pack_array(&pk, 2), msgpack_pack_int(&pk, 1), str("a\"b");
    msgpack_pack_int(&pk, 0);
    msgpack_pack_ext_with_body(&pk, "\xff", 1, 7), msgpack_pack_int(&pk, 0);
    EXPECT("{\"1\":\"one\",\"-2\":true,\"AQI=\":null,\"null\":0,\"true\":0,"
           "\"[1,\\\"a\\\\\\\"b\\\"]\":0,\"{\\\"ext\\\":7,\\\"data\\\":\\\"/w==\\\"}\":0}");

    /* ext values, negative types included (the msgpack timestamp is -1) */
    begin();
    msgpack_pack_array(&pk, 2);
    msgpack_pack_ext_with_body(&pk, "abc", 3, 5);
    msgpack_pack_ext_with_body(&pk, "\0\0\0\0", 4, -1);
    EXPECT("[{\"ext\":5,\"data\":\"YWJj\"},{\"ext\":-1,\"data\":\"AAAAAA==\"}]");

    /* integers at both ends keep every digit */
    begin();
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, UINT64_MAX);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_uint64(&pk, 0);
    EXPECT("[18446744073709551615,-9223372036854775808,0]");

    /* floats read back as the same double, and as floats */
    begin();
    msgpack_pack_array(&pk, 6);
    msgpack_pack_double(&pk, 0.1);
    msgpack_pack_double(&pk, 1.0);
    msgpack_pack_double(&pk, 1e300);
    msgpack_pack_double(&pk, NAN);
    msgpack_pack_double(&pk, -INFINITY);
    msgpack_pack_float(&pk, 0.5f);
    EXPECT("[0.1,1.0,1e+300,\"NaN\",\"-Infinity\",0.5]");

    /* control bytes escaped; UTF-8 kept; a byte that is not UTF-8 is U+FFFD */
    begin();
    msgpack_pack_array(&pk, 3);
    str("a\r\nb\t\x01");
    str("\xc3\xa9\xf0\x9f\x98\x80");
    str("x\xff\xc3(\xed\xa0\x80y");
    EXPECT("[\"a\\u000d\\u000ab\\u0009\\u0001\",\"\xc3\xa9\xf0\x9f\x98\x80\","
           "\"x\\ufffd\\ufffd(\\ufffd\\ufffd\\ufffdy\"]");

    /* duplicate keys after conversion are both kept */
    begin();
    msgpack_pack_map(&pk, 2);
    msgpack_pack_int(&pk, 1), msgpack_pack_int(&pk, 10);
    str("1"), msgpack_pack_int(&pk, 20);
    EXPECT("{\"1\":10,\"1\":20}");

    /* keys nested in keys: JSON text to 4 levels, then base64 of the msgpack */
    begin();
    msgpack_pack_map(&pk, 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_array(&pk, 1), msgpack_pack_int(&pk, 7);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    EXPECT("{\"{\\\"[7]\\\":1}\":2}");
    begin();
    for (int i = 0; i < 5; i++) msgpack_pack_map(&pk, 1);
    msgpack_pack_array(&pk, 0);
    for (int i = 0; i < 5; i++) msgpack_pack_int(&pk, i);
    EXPECT("{\"{\\\"{\\\\\\\"{\\\\\\\\\\\\\\\"{\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\"kA==\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\\":0}\\\\\\\\\\\\\\\":1}\\\\\\\":2}\\\":3}\":4}");
    /* 30 levels stay small: no doubling past the fourth */
    begin();
    for (int i = 0; i < 30; i++) msgpack_pack_map(&pk, 1);
    msgpack_pack_array(&pk, 0);
    for (int i = 0; i < 30; i++) msgpack_pack_int(&pk, i);
    size_t n30 = 0;
    char *deep = gpuq_json_from_msgpack(sb.data, sb.size, &n30);
    CHECK(deep && n30 < 4096);
    free(deep);

    /* not one msgpack value: NULL */
    size_t n;
    CHECK(gpuq_json_from_msgpack("\x92\x01", 2, &n) == NULL);
    CHECK(gpuq_json_from_msgpack("\x01\x02", 2, &n) == NULL);

    msgpack_sbuffer_destroy(&sb);
    return check_done("json");
}
