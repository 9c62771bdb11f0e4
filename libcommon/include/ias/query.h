/* URL query strings and percent-decoding (application/x-www-form-urlencoded).
 *
 * Pure and bounded: nothing allocates, every output buffer has a caller-given
 * size and overflow is reported, never truncated silently. A decoded NUL
 * (%00) is malformed: values are C strings. */
#ifndef IAS_QUERY_H
#define IAS_QUERY_H

#include "ias/common.h"

typedef enum {
    IAS_QUERY_MISSING = 0,    /* no such key */
    IAS_QUERY_FOUND = 1,      /* value decoded into buf */
    IAS_QUERY_MALFORMED = -1, /* bad %-escape or %00 in a key looked at or in the value */
    IAS_QUERY_TOOLONG = -2,   /* the decoded value does not fit in buf (buf is "") */
} ias_query_rc;

/* Percent-decodes src[0..srclen) into dst (NUL-terminated); '+' becomes a space
 * when plus_space (query strings), stays '+' otherwise (paths). Returns the
 * decoded length (>= 0), IAS_QUERY_MALFORMED (a '%' not followed by two hex
 * digits, or %00) or IAS_QUERY_TOOLONG (needs more than dstlen - 1 bytes).
 * On error dst is "" (when dstlen > 0). */
int ias_url_decode(const char *src, size_t srclen, bool plus_space, char *dst, size_t dstlen);

/* Looks up the first "name=value" pair in a raw query string (without '?'; NULL
 * is an empty query). Keys are decoded before comparing ("a%5Fb" matches
 * "a_b"); a key without '=' has the value "". Pairs are separated by '&'; empty
 * pairs are skipped. Pairs after the first match are not inspected; a
 * malformed key before it makes the whole lookup MALFORMED (it might have been
 * the one asked for). */
ias_query_rc ias_query_get(const char *query, const char *name, char *buf, size_t buflen);

/* Integer convenience over ias_query_get: a base-10 long long within
 * [min, max]. MISSING leaves *out untouched; anything that is not a number in
 * range is MALFORMED. */
ias_query_rc ias_query_get_ll(const char *query, const char *name, long long min, long long max,
                              long long *out);

#endif
