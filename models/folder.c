/* folder.c -- reading a model folder's JSON files. */
#include "models/folder.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

json_t *gpuq_folder_json(const char *dir, const char *name, int *absent, char *err, size_t errlen) {
    char path[4096];
    json_error_t jerr;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    *absent = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) *absent = 1;
        snprintf(err, errlen, "%s: %s", path, errno == ENOENT ? "missing" : strerror(errno));
        return NULL;
    }
    json_t *j = json_loadf(f, 0, &jerr);
    fclose(f);
    if (!j) snprintf(err, errlen, "%s: %s (line %d)", path, jerr.text, jerr.line);
    return j;
}

int gpuq_json_int(json_t *obj, const char *key, int lo, int hi) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) return -1;
    return (int)json_integer_value(v);
}

const char *gpuq_json_str(json_t *obj, const char *key, const char *dflt) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}
