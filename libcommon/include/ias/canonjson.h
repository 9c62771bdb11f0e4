/* Canonical JSON (RFC 8785, JSON Canonicalization Scheme): the one byte string
 * a JSON value serialises to, so that a hash or a signature over it can be
 * recomputed by anyone from the value alone.
 *
 * Output rules (RFC 8785 section 3.2):
 *   - no whitespace between tokens;
 *   - object members sorted by their names compared as UTF-16 code units;
 *   - strings as UTF-8 with the minimal escapes: \" \\ \b \f \n \r \t, other
 *     characters below U+0020 as \u00xx (lower-case hex), everything else
 *     literal (including '/' and non-ASCII);
 *   - numbers as IEEE-754 doubles printed like ECMAScript's Number.toString:
 *     integral values below 1e21 as plain integers ("1.0" -> "1", "1e2" ->
 *     "100", "-0" -> "0"), others with the shortest round-trip digits.
 *
 * The parser is strict: it refuses invalid UTF-8 (overlong forms, encoded
 * surrogates, code points above U+10FFFF), lone surrogate escapes, duplicate
 * member names (JCS requires unique names), numbers outside the double range,
 * nesting deeper than IAS_CANONJSON_MAX_DEPTH, and anything after the value but
 * whitespace. Pure and thread-safe; the output is allocated. */
#ifndef IAS_CANONJSON_H
#define IAS_CANONJSON_H

#include "ias/common.h"

#define IAS_CANONJSON_MAX_DEPTH 64

enum {
    /* Refuse strings containing U+0000 (PostgreSQL jsonb and C strings cannot
     * hold it, so a stored copy would differ from what was hashed). */
    IAS_CANONJSON_NO_NUL = 1u << 0,
};

/* Canonicalises the JSON text in[0..len). On IAS_OK *out is a NUL-terminated
 * malloc'd string (free() it) of *outlen bytes. On IAS_ERR *out is NULL and err
 * says what and at which byte offset ("duplicate member name at byte 17"). */
int ias_canonjson(const char *in, size_t len, unsigned flags, char **out, size_t *outlen, char *err,
                  size_t errlen) IAS_MUSTCHECK;

/* ECMAScript Number.prototype.toString of v ("1", "0.1", "1e+21", "1.5e-7").
 * IAS_ERR for NaN or an infinity, or when buf (>= 32 bytes is always enough)
 * is too short. */
int ias_canonjson_number(double v, char *buf, size_t len) IAS_MUSTCHECK;

#endif
