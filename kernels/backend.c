/* backend.c -- choosing a backend, and what both backends share. */
#include "kernels/backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/cuda_module.h"

static const char *precisions[] = {"f32", "bf16", "f16"};

const char *gpuq_precision_name(enum gpuq_precision p) { return precisions[p]; }

int gpuq_precision_from_name(const char *s) {
    for (int i = 0; i < 3; i++)
        if (strcmp(s, precisions[i]) == 0) return i;
    return -1;
}

/* ---- the CUDA module ---- */

static const struct gpuq_cuda_module *load(const char *path, char *why, size_t len) {
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(why, len, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    const struct gpuq_cuda_module *m = dlsym(h, "gpuq_cuda_module");
    if (m && m->abi == GPUQ_CUDA_MODULE_ABI && strcmp(m->version, GPUQ_VERSION) == 0 &&
        m->backend_size == sizeof(struct gpuq_backend) && m->n_ops == GPUQ_OP_COUNT)
        return m;   /* never closed: its kernels serve until the process ends */
    snprintf(why, len, "%s is not from this build of gpuq %s%s%s", path, GPUQ_VERSION,
             m && m->abi == GPUQ_CUDA_MODULE_ABI ? ": it is " : "",
             m && m->abi == GPUQ_CUDA_MODULE_ABI ? m->version : "");
    dlclose(h);
    return NULL;
}

const struct gpuq_cuda_module *gpuq_cuda_module_load(char *why, size_t len) {
    static const struct gpuq_cuda_module *mod;
    static char reason[512];
    static int tried;
    if (!tried) {
        tried = 1;
        const char *env = getenv("GPUQ_CUDA_MODULE");
        char dir[PATH_MAX], path[PATH_MAX + 64];
        ssize_t n = readlink("/proc/self/exe", dir, sizeof(dir) - 1);
        dir[n > 0 ? n : 0] = '\0';
        if (strrchr(dir, '/')) *strrchr(dir, '/') = '\0';
        snprintf(reason, sizeof(reason), "no CUDA module: %s is not beside the program (%s) nor in "
                 "%s/../lib/gpuq (install gpuq-cuda, or set GPUQ_CUDA_MODULE)", GPUQ_CUDA_MODULE_FILE, dir, dir);
        static const char *const places[] = {"%s/" GPUQ_CUDA_MODULE_FILE, "%s/../lib/gpuq/" GPUQ_CUDA_MODULE_FILE};
        for (int i = env && *env ? -1 : 0; !mod && i < 2; i++) {
            if (i < 0) snprintf(path, sizeof(path), "%s", env);
            else snprintf(path, sizeof(path), places[i], dir);
            if (i >= 0 && access(path, F_OK) != 0) continue;
            mod = load(path, reason, sizeof(reason));
            if (!mod) break;    /* one that is there but will not load is the reason to give */
        }
    }
    if (!mod) snprintf(why, len, "%s", reason);
    return mod;
}

int gpuq_backend_open(struct gpuq_backend *be, const char *kind, int device, char *err,
                      size_t errlen) {
    memset(be, 0, sizeof(*be));
    if (strcmp(kind, "cpu") == 0) return gpuq_backend_cpu_open(be);
    if (strcmp(kind, "cuda") != 0 && strcmp(kind, "auto") != 0) {
        snprintf(err, errlen, "unknown backend '%s' (auto, cpu, cuda)", kind);
        return -1;
    }
    char why[512], no_device[160];
    const struct gpuq_cuda_module *m = gpuq_cuda_module_load(why, sizeof(why));
    if (m) {
        if (m->init(be, device, no_device, sizeof(no_device)) == 0) {
            memcpy(be->kernel, m->kernel, sizeof(be->kernel));
            memcpy(be->reserve, m->reserve, sizeof(be->reserve));
            return 0;
        }
        snprintf(why, sizeof(why), "%s", no_device);
    }
    if (strcmp(kind, "cuda") == 0) {
        snprintf(err, errlen, "cuda backend unavailable: %s", why);
        return -1;
    }
    int result = gpuq_backend_cpu_open(be);
    snprintf(be->note, sizeof(be->note), "%s", why);
    return result;
}

int gpuq_backend_cuda_devices(void) {
    char why[512];
    const struct gpuq_cuda_module *m = gpuq_cuda_module_load(why, sizeof(why));
    return m ? m->device_count() : 0;
}

void gpuq_backend_destroy(struct gpuq_backend *be) {
    if (be && be->iface) be->iface->destroy(be);
    if (be) memset(be, 0, sizeof(*be));
}
