/* webhook_addr.c -- the webhook address rules: refused ranges, then the
 * operator's --webhook-allow ranges. */
#include "worker/webhook_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

/* Refused unless allowed. IPv4 ranges also cover their IPv6 forms. */
static const char *const refused[] = {
    "0.0.0.0/8",        /* "this network", unspecified */
    "10.0.0.0/8",       /* RFC 1918 */
    "100.64.0.0/10",    /* CGNAT */
    "127.0.0.0/8",      /* loopback */
    "169.254.0.0/16",   /* link-local: cloud metadata */
    "172.16.0.0/12",    /* RFC 1918 */
    "192.168.0.0/16",   /* RFC 1918 */
    "224.0.0.0/4",      /* multicast */
    "240.0.0.0/4",      /* reserved, broadcast */
    "::/96",            /* unspecified, loopback, IPv4-compatible */
    "fc00::/7",         /* ULA */
    "fe80::/10",        /* link-local */
    "fec0::/10",        /* site-local (deprecated) */
    "ff00::/8",         /* multicast */
};

static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};

int gpuq_cidr_parse(const char *text, struct gpuq_cidr *out) {
    char host[64];
    const char *slash = strchr(text, '/');
    size_t n = slash ? (size_t)(slash - text) : strlen(text);
    if (n == 0 || n >= sizeof(host)) return -1;
    memcpy(host, text, n);
    host[n] = '\0';
    int v4 = inet_pton(AF_INET, host, out->addr + 12) == 1, max = v4 ? 32 : 128;
    if (v4) memcpy(out->addr, mapped, 12);
    else if (inet_pton(AF_INET6, host, out->addr) != 1) return -1;
    out->bits = max;
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (slash[1] < '0' || slash[1] > '9' || *end || bits > max) return -1;
        out->bits = (int)bits;
    }
    if (v4) out->bits += 96;
    return 0;
}

static int inside(const unsigned char *a, const struct gpuq_cidr *c) {
    int full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, (size_t)full) != 0) return 0;
    if (!rest) return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

int gpuq_webhook_addr_allowed(const struct sockaddr *sa, const struct gpuq_cidr *allow, int n_allow) {
    unsigned char raw[16], a[16];
    if (sa->sa_family == AF_INET) {
        memcpy(raw, mapped, 12);
        memcpy(raw + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(raw, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    } else {
        return 0;
    }
    memcpy(a, raw, 16);
    if (memcmp(raw, nat64, 12) == 0) {
        memcpy(a, mapped, 12);
    } else if (raw[0] == 0x20 && raw[1] == 0x02) {     /* 6to4: 2002:AABB:CCDD:: */
        memcpy(a, mapped, 12);
        memcpy(a + 12, raw + 2, 4);
    }
    for (int i = 0; i < n_allow; i++)
        if (inside(a, &allow[i]) || inside(raw, &allow[i])) return 1;
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        struct gpuq_cidr c;
        if (gpuq_cidr_parse(refused[i], &c) != 0) abort();     /* the table is ours */
        if (inside(a, &c)) return 0;
    }
    return 1;
}
