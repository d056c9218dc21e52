/* test_webhook_addr.c -- the webhook address rules on a table of addresses;
 * nothing connects anywhere. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "check.h"
#include "worker/webhook_addr.h"

/* Whether addr (IPv4 or IPv6 text) may be connected to under the rules. */
static int allowed(const char *addr, const struct gpuq_cidr *allow, int n) {
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, addr, &v4.sin_addr) == 1)
        return gpuq_webhook_addr_allowed((struct sockaddr *)&v4, allow, n);
    if (inet_pton(AF_INET6, addr, &v6.sin6_addr) == 1)
        return gpuq_webhook_addr_allowed((struct sockaddr *)&v6, allow, n);
    fprintf(stderr, "bad test address %s\n", addr);
    abort();
}

static const struct {
    const char *addr;
    int ok;
} by_default[] = {
    {"127.0.0.1", 0}, {"127.255.255.254", 0}, {"10.1.2.3", 0}, {"172.16.0.1", 0},
    {"172.31.255.255", 0}, {"172.32.0.1", 1}, {"172.15.255.255", 1}, {"192.168.1.1", 0},
    {"192.169.0.1", 1}, {"169.254.169.254", 0}, {"100.64.0.1", 0}, {"100.127.255.255", 0},
    {"100.128.0.1", 1}, {"100.63.255.255", 1}, {"0.0.0.0", 0}, {"0.1.2.3", 0},
    {"224.0.0.1", 0}, {"239.255.255.250", 0}, {"255.255.255.255", 0}, {"8.8.8.8", 1},
    {"1.1.1.1", 1}, {"93.184.216.34", 1},
    {"::", 0}, {"::1", 0}, {"fe80::1", 0}, {"febf::1", 0}, {"fc00::1", 0}, {"fd12:3456::1", 0},
    {"ff02::1", 0}, {"fec0::1", 0}, {"2001:db8::1", 1}, {"2606:4700::1111", 1},
    /* IPv4 inside IPv6 is judged as IPv4 */
    {"::ffff:127.0.0.1", 0}, {"::ffff:169.254.169.254", 0}, {"::ffff:10.0.0.1", 0},
    {"::ffff:8.8.8.8", 1}, {"::127.0.0.1", 0}, {"64:ff9b::a9fe:a9fe", 0}, {"64:ff9b::808:808", 1},
    {"2002:a9fe:a9fe::1", 0}, {"2002:0808:0808::1", 1},
};

int main(void) {
    for (size_t i = 0; i < sizeof(by_default) / sizeof(by_default[0]); i++) {
        int got = allowed(by_default[i].addr, NULL, 0);
        CHECK(got == by_default[i].ok);
        if (got != by_default[i].ok) fprintf(stderr, "  address %s\n", by_default[i].addr);
    }

    struct gpuq_cidr allow[3];
    CHECK(gpuq_cidr_parse("127.0.0.0/8", &allow[0]) == 0);
    CHECK(gpuq_cidr_parse("fd00::/8", &allow[1]) == 0);
    CHECK(gpuq_cidr_parse("10.1.2.3", &allow[2]) == 0);
    CHECK(allowed("127.0.0.1", allow, 3) && allowed("127.9.9.9", allow, 3));
    CHECK(allowed("::ffff:127.0.0.1", allow, 3));
    CHECK(allowed("fd12::1", allow, 3) && !allowed("fc00::1", allow, 3));
    CHECK(allowed("10.1.2.3", allow, 3) && !allowed("10.1.2.4", allow, 3));
    CHECK(!allowed("169.254.169.254", allow, 3) && !allowed("::1", allow, 3));
    CHECK(allowed("::1", allow + 1, 0) == 0);

    struct gpuq_cidr c;
    CHECK(gpuq_cidr_parse("0.0.0.0/0", &c) == 0 && c.bits == 96);
    CHECK(allowed("169.254.169.254", &c, 1) && !allowed("::1", &c, 1));
    CHECK(gpuq_cidr_parse("::/0", &c) == 0 && c.bits == 0 && allowed("::1", &c, 1));
    const char *bad[] = {"", "/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/-1", "10.0.0.0/ 8",
                         "10.0.0/8", "example.com", "10.0.0.0/8x", "1.2.3.4.5"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) CHECK(gpuq_cidr_parse(bad[i], &c) != 0);
    return check_done("webhook_addr");
}
