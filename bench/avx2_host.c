/* avx2_host.c -- LD_PRELOAD=libavx2_host.so makes a process see an AVX2 host:
 * CPUID answers without AVX-512, AMX and AVX-VNNI, so that every library in
 * it (oneDNN, ONNX Runtime's MLAS, numpy) picks the kernels it would pick on
 * a CPU with AVX2 and FMA alone. scripts/bench --embed runs both gpuq and the
 * ONNX Runtime peer under it for its AVX2 rows; a benchmark tool, not a test.
 *
 * Linux's CPUID faulting (arch_prctl ARCH_SET_CPUID, on CPUs and hypervisors
 * that have it: /proc/cpuinfo's cpuid_fault) makes each CPUID instruction
 * raise SIGSEGV; the handler runs the real one with faulting briefly off,
 * clears the bits and steps over the instruction. Only CPUID run after this
 * library is loaded is masked (the C library's own choice at start is not),
 * and the setting lasts until the next exec. Where faulting is refused the
 * process runs unmasked, and says so on stderr. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int arch_prctl(int code, unsigned long arg) { return (int)syscall(SYS_arch_prctl, code, arg); }

/* leaf 7: the bits an AVX2 host lacks */
#define L7_EBX ((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) | (1u << 31))
#define L7_ECX ((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14))
#define L7_EDX ((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) | (1u << 25))
#define L7S1_EAX ((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23))   /* AVX-VNNI, AVX512_BF16, AMX-FP16, AVX-IFMA */

static void on_segv(int sig, siginfo_t *si, void *uc_) {
    ucontext_t *uc = uc_;
    greg_t *r = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)r[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) {   /* not CPUID: die as without us */
        signal(sig, SIG_DFL);
        (void)si;
        return;
    }
    unsigned a, b, c, d, leaf = (unsigned)r[REG_RAX], sub = (unsigned)r[REG_RCX];
    arch_prctl(ARCH_SET_CPUID, 1);
    __cpuid_count(leaf, sub, a, b, c, d);
    arch_prctl(ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) b &= ~L7_EBX, c &= ~L7_ECX, d &= ~L7_EDX;
    if (leaf == 7 && sub == 1) a &= ~L7S1_EAX;
    if (leaf == 0x1d || leaf == 0x1e) a = b = c = d = 0;   /* AMX tile and TMUL information */
    r[REG_RAX] = a, r[REG_RBX] = b, r[REG_RCX] = c, r[REG_RDX] = d;
    r[REG_RIP] += 2;
}

__attribute__((constructor)) static void avx2_host(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || arch_prctl(ARCH_SET_CPUID, 0) != 0)
        fprintf(stderr, "avx2_host: CPUID faulting is not available here; the host is seen as it is\n");
}
