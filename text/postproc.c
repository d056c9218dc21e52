/* postproc.c -- see postproc.h. */
#include "text/postproc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int put(int32_t *ids, int32_t *types, int n, int32_t id, int type) {
    ids[n] = id;
    if (types) types[n] = type;
    return n + 1;
}

static int put_seq(int32_t *ids, int32_t *types, int n, const int32_t *s, int ns, int type) {
    for (int i = 0; i < ns; i++) n = put(ids, types, n, s[i], type);
    return n;
}

int tok_post_added(const struct tok_post *p, int pair) {
    switch (p->kind) {
    case TOK_POST_NONE: return 0;
    case TOK_POST_BERT: return pair ? 3 : 2;
    case TOK_POST_ROBERTA: return pair ? 4 : 2;
    case TOK_POST_TEMPLATE: {
        int n = 0;
        for (int i = 0; i < p->n_tpl[pair]; i++) n += p->tpl[pair][i].n_ids;
        return n;
    }
    }
    return 0;
}

int tok_post_apply(const struct tok_post *p, const int32_t *a, int na, const int32_t *b, int nb,
                   int32_t *ids, int32_t *types) {
    int n = 0;
    switch (p->kind) {
    case TOK_POST_NONE:
        n = put_seq(ids, types, n, a, na, 0);
        return b ? put_seq(ids, types, n, b, nb, 1) : n;
    case TOK_POST_BERT:
        n = put(ids, types, n, p->cls, 0);
        n = put_seq(ids, types, n, a, na, 0);
        n = put(ids, types, n, p->sep, 0);
        if (!b) return n;
        n = put_seq(ids, types, n, b, nb, 1);
        return put(ids, types, n, p->sep, 1);
    case TOK_POST_ROBERTA:
        n = put(ids, types, n, p->cls, 0);
        n = put_seq(ids, types, n, a, na, 0);
        n = put(ids, types, n, p->sep, 0);
        if (!b) return n;
        n = put(ids, types, n, p->sep, 0);
        n = put_seq(ids, types, n, b, nb, 0);
        return put(ids, types, n, p->sep, 0);
    case TOK_POST_TEMPLATE: {
        int pair = b != NULL;
        for (int i = 0; i < p->n_tpl[pair]; i++) {
            const struct tok_tpl_piece *t = &p->tpl[pair][i];
            if (t->seq == 0) n = put_seq(ids, types, n, a, na, t->type_id);
            else if (t->seq == 1) n = put_seq(ids, types, n, b, nb, t->type_id);
            else n = put_seq(ids, types, n, t->ids, t->n_ids, t->type_id);
        }
        return n;
    }
    }
    return n;
}

/* ---- reading tokenizer.json ---- */

static int id_in_range(json_t *v) {
    return json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) < 1 << 24;
}

/* ["[CLS]", 101] */
static int32_t pair_id(json_t *pp, const char *key) {
    json_t *v = json_array_get(json_object_get(pp, key), 1);
    return id_in_range(v) ? (int32_t)json_integer_value(v) : -1;
}

static int read_template(struct tok_post *p, int which, json_t *pp, char *err, size_t errlen) {
    json_t *list = json_object_get(pp, which ? "pair" : "single");
    json_t *specials = json_object_get(pp, "special_tokens");
    size_t n = json_array_size(list);
    if (!json_is_array(list) || !(p->tpl[which] = calloc(n + 1, sizeof **p->tpl))) goto bad;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i), *sq = json_object_get(e, "Sequence");
        json_t *sp = json_object_get(e, "SpecialToken");
        struct tok_tpl_piece *t = &p->tpl[which][p->n_tpl[which]++];
        json_t *body = sq ? sq : sp, *type = json_object_get(body, "type_id");
        const char *name = json_string_value(json_object_get(body, "id"));
        if (!name || (type && !json_is_integer(type))) goto bad;
        t->type_id = type ? (int)json_integer_value(type) : 0;
        if (sq) {
            if (strcmp(name, "A") && strcmp(name, "B")) goto bad;
            t->seq = name[0] == 'B';
            if (t->seq && !which) goto bad;
            continue;
        }
        t->seq = -1;
        json_t *ids = json_object_get(json_object_get(specials, name), "ids");
        size_t k = json_array_size(ids);
        if (!sp || !json_is_array(ids) || !(t->ids = malloc((k + 1) * sizeof *t->ids))) goto bad;
        for (size_t j = 0; j < k; j++) {
            if (!id_in_range(json_array_get(ids, j))) goto bad;
            t->ids[t->n_ids++] = (int32_t)json_integer_value(json_array_get(ids, j));
        }
    }
    return 0;
bad:
    snprintf(err, errlen, "tokenizer.json: TemplateProcessing %s template is malformed", which ? "pair" : "single");
    return -1;
}

static int parse_one(struct tok_post *p, json_t *j, int *seen, char *err, size_t errlen) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (type && (strcmp(type, "ByteLevel") == 0 || strcmp(type, "RobertaProcessing") == 0)) {
        json_t *trim = json_object_get(j, "trim_offsets"), *prefix = json_object_get(j, "add_prefix_space");
        p->trim_offsets = !json_is_boolean(trim) || json_is_true(trim);
        p->prefix_space = !json_is_boolean(prefix) || json_is_true(prefix);
        if (strcmp(type, "ByteLevel") == 0) return 0;   /* offsets only */
    }
    if (type && strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(list); i++)
            if (parse_one(p, json_array_get(list, i), seen, err, errlen) != 0) return -1;
        return 0;
    }
    int bert = type && strcmp(type, "BertProcessing") == 0;
    int roberta = type && strcmp(type, "RobertaProcessing") == 0;
    int tpl = type && strcmp(type, "TemplateProcessing") == 0;
    if (!bert && !roberta && !tpl) {
        snprintf(err, errlen, "tokenizer.json: post_processor '%.40s' is not supported", type ? type : "(no type)");
        return -1;
    }
    if ((*seen)++) {
        snprintf(err, errlen, "tokenizer.json: a Sequence of two post-processors that add tokens is not supported");
        return -1;
    }
    if (tpl) {
        p->kind = TOK_POST_TEMPLATE;
        return read_template(p, 0, j, err, errlen) || read_template(p, 1, j, err, errlen) ? -1 : 0;
    }
    p->kind = bert ? TOK_POST_BERT : TOK_POST_ROBERTA;
    p->cls = pair_id(j, "cls");
    p->sep = pair_id(j, "sep");
    if (p->cls < 0 || p->sep < 0) {
        snprintf(err, errlen, "tokenizer.json: post_processor %s has no cls or sep id", type);
        return -1;
    }
    return 0;
}

int tok_post_parse(struct tok_post *p, json_t *j, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    int seen = 0;
    return !j || json_is_null(j) ? 0 : parse_one(p, j, &seen, err, errlen);
}

void tok_post_free(struct tok_post *p) {
    for (int w = 0; w < 2; w++) {
        for (int i = 0; i < p->n_tpl[w]; i++) free(p->tpl[w][i].ids);
        free(p->tpl[w]);
    }
    memset(p, 0, sizeof *p);
}
