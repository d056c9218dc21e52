/* cache.c -- results kept by content in Redis. */
#include "base/invariant.h"
#include "worker/cache.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* the op's descriptor: only decoded jobs (a valid op) reach here */
#define DESC(t) (GPUQ_INVARIANT((t)->job.op >= 0 && (t)->job.op < GPUQ_OP_COUNT), gpuq_op_table[(t)->job.op])

static void feed(void *ctx, const void *p, size_t n) { EVP_DigestUpdate(ctx, p, n); }

/* Feeds the file at path (its name too, so files cannot stand in for one
 * another). 1 when it was read, 0 when absent, -1 on a read error. */
static int feed_file(EVP_MD_CTX *ctx, const char *path, const char *name) {
    FILE *f = fopen(path, "rb");
    static char buf[1 << 16];
    size_t n;
    if (!f) return 0;
    EVP_DigestUpdate(ctx, name, strlen(name) + 1);
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) EVP_DigestUpdate(ctx, buf, n);
    int bad = ferror(f);
    fclose(f);
    return bad ? -1 : 1;
}

int gpuq_cache_fingerprint(const char *path, char out[65]) {
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json", "vocab.txt",
                                        "tokenizer_config.json", "modules.json", "1_Pooling/config.json",
                                        "sentence_bert_config.json", "config_sentence_transformers.json"};
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    struct stat st;
    int read = 0, bad = !ctx || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) || stat(path, &st) != 0;
    int folder = !bad && S_ISDIR(st.st_mode), rc = bad || folder ? 0 : feed_file(ctx, path, "");
    if (rc > 0) read++;
    for (size_t i = 0; !bad && folder && i < sizeof(files) / sizeof(files[0]); i++) {
        char full[4096];
        snprintf(full, sizeof(full), "%s/%s", path, files[i]);
        int got = feed_file(ctx, full, files[i]);
        bad |= got < 0;
        read += got > 0;
    }
    bad |= rc < 0 || !read || !EVP_DigestFinal_ex(ctx, md, &len) || len != 32;
    EVP_MD_CTX_free(ctx);
    for (unsigned i = 0; !bad && i < 32; i++) snprintf(out + 2 * i, 3, "%02x", md[i]);
    return bad ? -1 : 0;
}

int gpuq_cache_name(struct worker_task *t, const char *salt) {
    if (!DESC(&t->t)->cache_key || t->t.rows < 1) return -1;
    char (*names)[65] = calloc((size_t)t->t.rows, sizeof(*names));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = names && ctx;
    size_t bytes = 0;
    for (int64_t r = 0; ok && r < t->t.rows; r++) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;
        ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) && EVP_DigestUpdate(ctx, salt, strlen(salt) + 1) &&
             (bytes = DESC(&t->t)->cache_key(&t->t, r, feed, ctx)) > 0 && EVP_DigestFinal_ex(ctx, md, &len) && len == 32;
        for (unsigned i = 0; ok && i < 32; i++) snprintf(names[r] + 2 * i, 3, "%02x", md[i]);
    }
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        free(names);
        return -1;
    }
    t->cache_names = names;
    t->cache_row_bytes = bytes;
    return 0;
}

/* The tasks of queue q among tasks: their rows' names, in order. */
static int names_of(struct worker_task **tasks, int n, int q, const char **out) {
    int k = 0;
    for (int i = 0; i < n; i++)
        if (tasks[i]->entry.queue == q)
            for (int64_t r = 0; r < tasks[i]->t.rows; r++) out[k++] = tasks[i]->cache_names[r];
    return k;
}

int gpuq_cache_lookup(struct gpuq_stream *st, struct worker_task **tasks, int n, int64_t *hits,
                      int64_t *misses) {
    int64_t total = 0;
    int result = 0;
    for (int i = 0; i < n; i++) total += tasks[i]->t.rows;
    const char **names = calloc((size_t)total + 1, sizeof(char *));
    *hits = 0;
    *misses = total;
    if (!names) return 0;
    for (int q = 0; q < st->n_queues; q++) {
        int k = names_of(tasks, n, q, names);
        redisReply *r = NULL;
        if (k == 0) continue;
        if (gpuq_stream_get_cached(st, q, names, k, &r) != 0) {
            result = st->rc ? 0 : -1;   /* an error reply costs the lookup; a lost connection more */
            continue;
        }
        size_t at = 0;
        for (int i = 0; i < n; i++) {
            struct worker_task *t = tasks[i];
            if (t->entry.queue != q) continue;
            size_t bytes = t->cache_row_bytes, found = 0;
            for (int64_t row = 0; row < t->t.rows; row++) {
                const redisReply *v = r->element[at + (size_t)row];
                found += v->type == REDIS_REPLY_STRING && v->len == bytes;
            }
            *hits += (int64_t)found;
            *misses -= (int64_t)found;
            if (found == (size_t)t->t.rows && bytes) {
                for (int64_t row = 0; row < t->t.rows; row++)
                    memcpy((char *)t->t.out + (size_t)row * bytes, r->element[at + (size_t)row]->str, bytes);
                t->cache_hit = 1;
            }
            at += (size_t)t->t.rows;
        }
        freeReplyObject(r);
    }
    free(names);
    return result;
}

void gpuq_cache_keep(struct worker_task *t) {
    size_t bytes = t->cache_row_bytes * (size_t)t->t.rows;
    if (!t->cache_names || t->cache_hit || !bytes || t->t.job.err || !(t->cache_raw = malloc(bytes))) return;
    memcpy(t->cache_raw, t->t.out, bytes);
}

void gpuq_cache_put(struct gpuq_stream *st, const struct worker_task *t, int64_t ttl_s) {
    size_t bytes = t->cache_raw ? t->cache_row_bytes : 0;
    for (int64_t r = 0; bytes && r < t->t.rows; r++)
        gpuq_stream_put_cached(st, t->entry.queue, t->cache_names[r], (const char *)t->cache_raw + (size_t)r * bytes,
                               bytes, ttl_s);
}

void gpuq_cache_forget(struct worker_task *t) {
    free(t->cache_names);
    free(t->cache_raw);
    t->cache_names = NULL;
    t->cache_raw = NULL;
    t->cache_row_bytes = 0;
    t->cache_hit = 0;
}
