/* test_webhook.c -- what reaches a webhook's headers: job-controlled bytes
 * percent-encoded, traceparent only in its W3C form; and the signature. */
#include <stdlib.h>

#include "check.h"
#include "worker/webhook.h"
#include "worker/webhook_sign.h"

static void encodes(const char *in, size_t n, const char *want) {
    char *got = gpuq_webhook_header_value(in, n);
    CHECK(got && strcmp(got, want) == 0);
    if (got && strcmp(got, want) != 0) fprintf(stderr, "  got %s, want %s\n", got, want);
    free(got);
}

int main(void) {
    encodes("job-1", 5, "job-1");
    encodes("a\r\nX-Injected: 1", 16, "a%0D%0AX-Injected:%201");
    encodes("100%", 4, "100%25");
    encodes("\x00\x7f\xc3\xa9", 4, "%00%7F%C3%A9");
    encodes("", 0, "");

    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    CHECK(gpuq_webhook_traceparent_ok(tp, strlen(tp)));
    const char *bad[] = {
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nX: 1",   /* version 00 is 55 bytes */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",           /* upper case */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",           /* zero trace id */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",           /* zero parent id */
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",           /* version ff */
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",              /* short */
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",          /* later version: '-' next */
        "00-4bf92f3577b34da6a3ce929d0e0e47\n6-00f067aa0ba902b7-01",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK(!gpuq_webhook_traceparent_ok(bad[i], strlen(bad[i])));
        if (gpuq_webhook_traceparent_ok(bad[i], strlen(bad[i]))) fprintf(stderr, "  took %s\n", bad[i]);
    }
    const char *later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
    CHECK(gpuq_webhook_traceparent_ok(later, strlen(later)));

    /* the Standard Webhooks example: key, id, timestamp, body and signature */
    unsigned char key[] = {0x31, 0xf2, 0x90, 0xf6, 0xbf, 0x06, 0x29, 0x8a, 0xab, 0x4f, 0x08, 0xd4,
                           0x3c, 0x3f, 0x08, 0x2c, 0xf6, 0x48, 0xa3, 0x62, 0xda, 0x2d, 0xa4, 0xb0};
    char sig[128];
    const char *body = "{\"test\": 2432232314}";
    CHECK(gpuq_webhook_sign(key, sizeof(key), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
                            strlen(body), sig, sizeof(sig)) == 0);
    CHECK_STR(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    return check_done("webhook");
}
