/* A small JSON object writer for hot paths (usage events): appends into one
 * growing buffer, no tree, no per-field allocation. Strings are escaped the
 * way cJSON prints them (quote, backslash and control characters; other bytes
 * as they are), so its output parses back to the same values. Only flat
 * objects; build nested documents with cJSON. */
#ifndef IAS_JSONW_H
#define IAS_JSONW_H

#include "ias/common.h"
#include "ias/strbuf.h"

typedef struct ias_jsonw {
    ias_strbuf b;
    bool first; /* no member written yet */
} ias_jsonw;

/* Starts an object ("{"); cap_hint sizes the first allocation. */
void ias_jsonw_begin(ias_jsonw *w, size_t cap_hint);
/* "key":"value"; a NULL value writes null. */
void ias_jsonw_str(ias_jsonw *w, const char *key, const char *value);
/* Like ias_jsonw_str, but NULL and "" both write null. */
void ias_jsonw_str_or_null(ias_jsonw *w, const char *key, const char *value);
void ias_jsonw_int(ias_jsonw *w, const char *key, long long value);
void ias_jsonw_bool(ias_jsonw *w, const char *key, bool value);
void ias_jsonw_null(ias_jsonw *w, const char *key);
/* Closes the object and returns the malloc'd text (the caller frees it). */
char *ias_jsonw_end(ias_jsonw *w);

#endif
