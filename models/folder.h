/* folder.h -- reading a model folder's JSON files. */
#ifndef GPUQ_FOLDER_H
#define GPUQ_FOLDER_H

#include <jansson.h>
#include <stddef.h>

/* dir/name parsed, or NULL: *absent set when the file is not there (err
 * says so too), else err says why. */
json_t *gpuq_folder_json(const char *dir, const char *name, int *absent, char *err, size_t errlen);

/* An integer field in [lo, hi], or -1 (absent or out of range). */
int gpuq_json_int(json_t *obj, const char *key, int lo, int hi);
/* A string field, or dflt. */
const char *gpuq_json_str(json_t *obj, const char *key, const char *dflt);

#endif
