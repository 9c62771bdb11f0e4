/* URL query strings and percent-decoding (application/x-www-form-urlencoded).
 *
 * Pure and bounded: nothing allocates, every output buffer has a caller-given
 * size and overflow is reported, never truncated silently. A decoded NUL
 * (%00) is malformed: values are C strings. */
#ifndef IAS_QUERY_H
#define IAS_QUERY_H

#include "ias/common.h"
#include "ias/crypto.h"

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

/* Keyset-pagination cursors of the management APIs (users, pdp): the opaque
 * next_cursor is base64url("<timestamp>|<uuid>"), the sort key of the last row
 * of a page. The timestamp is the row's ISO 8601 UTC time as SQL's
 * to_char(... 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') prints it (microseconds, so the
 * round trip through PostgreSQL is exact). A cursor carries no authority: the
 * list's own WHERE clause still scopes the rows, so a forged one can only move
 * the position. */
#define IAS_CURSOR_TS_LEN 40 /* timestamp buffer, NUL included */
#define IAS_CURSOR_MAX 128   /* encoded cursor buffer, NUL included */

typedef struct ias_cursor {
    char ts[IAS_CURSOR_TS_LEN];    /* "2026-11-22T05:40:00.123456Z" */
    char id[IAS_UUID_STR_LEN + 1]; /* the row's id (the tie-breaker) */
} ias_cursor;

/* Writes the cursor of (ts, id) into out; IAS_ERR when ts is not a timestamp
 * ias_cursor_decode would accept, id is not a UUID or out is too small. */
int ias_cursor_encode(const char *ts, const char *id, char *out, size_t outlen) IAS_MUSTCHECK;
/* Decodes a cursor from ias_cursor_encode. IAS_ERR (and *out zeroed) for
 * anything else: bad base64url, no '|', a timestamp that is not
 * YYYY-MM-DDTHH:MM:SS[.f{1,6}]Z with fields in range (so PostgreSQL never
 * refuses it), or an id that is not a UUID. */
int ias_cursor_decode(const char *cursor, ias_cursor *out) IAS_MUSTCHECK;

#endif
