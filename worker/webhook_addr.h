/* webhook_addr.h -- which addresses a webhook may connect to. Callback URLs
 * come from jobs, so by default the worker refuses the addresses that reach
 * inside its own network: loopback, link-local (cloud metadata), private
 * (RFC 1918, ULA, CGNAT), unspecified, multicast and reserved. Operators
 * open ranges with --webhook-allow CIDR. The check runs on the address
 * actually connected to, after DNS. No I/O. */
#ifndef GPUQ_WEBHOOK_ADDR_H
#define GPUQ_WEBHOOK_ADDR_H

#include <sys/socket.h>

/* An IPv6 prefix; IPv4 is held as IPv4-mapped IPv6 (::ffff:a.b.c.d). */
struct gpuq_cidr {
    unsigned char addr[16];
    int bits;
};

/* Parses "10.0.0.0/8", "fd00::/8" or a single address. Returns 0, or -1
 * when text is neither (bits past the prefix need not be zero). */
int gpuq_cidr_parse(const char *text, struct gpuq_cidr *out);

/* Whether a webhook may connect to sa (AF_INET or AF_INET6): 1 when the
 * address is public or inside one of the allow ranges, else 0. Addresses
 * that carry IPv4 (IPv4-mapped, NAT64 64:ff9b::/96, 6to4 2002::/16) are
 * judged as that IPv4 address. */
int gpuq_webhook_addr_allowed(const struct sockaddr *sa, const struct gpuq_cidr *allow, int n_allow);

#endif
