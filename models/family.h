/* family.h -- what a model family is. Each family is one room
 * (models/<family>/), listed once in models/families.def: how it recognises
 * a path (a folder's config.json model_type, or a file's tensors), and how
 * it loads one into its arch's struct. The machinery (models/model.c, the
 * backends, the ops) never names a family: it walks the table, and asks a
 * loaded model for its arch. */
#ifndef GPUQ_FAMILY_H
#define GPUQ_FAMILY_H

#include <jansson.h>
#include <stddef.h>

#include "models/model.h"
#include "models/safetensors.h"

/* What --model pointed at: a folder with its config.json, or a
 * safetensors file. */
struct gpuq_source {
    const char *path;
    json_t *config;                     /* a folder's config.json, or NULL */
    const struct gpuq_safetensors *st;  /* a file's tensors, or NULL */
};

struct gpuq_family {
    const char *name;
    enum gpuq_arch arch;
    /* A folder is this family's when config.json's model_type is one of
     * these (NULL-terminated; NULL for families of files). */
    const char *const *model_types;
    /* A file is this family's when this says 1 (NULL for folder families). */
    int (*recognise)(const struct gpuq_source *src);
    /* Loads src into m (m->impl, m->tok). 0, or -1 with a one-line reason
     * in err; the model is then freed by the caller. */
    int (*load)(struct gpuq_model *m, const struct gpuq_source *src, char *err, size_t errlen);
    const void *spec;                   /* the arch's description of this family */
};

#define GPUQ_FAMILY(name) extern const struct gpuq_family gpuq_family_##name;
#include "models/families.def"
#undef GPUQ_FAMILY

/* The families, in models/families.def's order, NULL-terminated. */
extern const struct gpuq_family *const gpuq_family_table[];

#endif
