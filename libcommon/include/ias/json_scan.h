/* A strict JSON scanner for hot paths: walks the raw bytes of a document
 * without building a tree or allocating, and hands out spans (offset, length)
 * of the input that the caller decodes only where it needs a value.
 *
 * Accepted: RFC 8259 JSON (whitespace = space, tab, LF, CR) with the limits
 * RFC 8259 section 9 allows, chosen so that whatever this scanner accepts,
 * cJSON accepts too and reads the same way:
 *   - nesting up to IAS_JSON_SCAN_MAX_DEPTH (cJSON's CJSON_NESTING_LIMIT);
 *   - number tokens up to IAS_JSON_SCAN_MAX_NUMBER bytes (cJSON parses a
 *     number from a 64-byte buffer and fails on longer ones);
 *   - a \uD800-\uDBFF escape must be followed by a \uDC00-\uDFFF one, and a
 *     lone \uDC00-\uDFFF escape is refused (cJSON refuses both).
 * Refused although cJSON takes them: control bytes as whitespace or inside
 * strings, a UTF-8 BOM, leading zeros and other numbers outside the grammar,
 * \u escapes with non-hex digits, bytes after the value. Bytes >= 0x80 are
 * not checked for UTF-8 (cJSON does not check them either). A caller that must
 * behave exactly like cJSON on everything falls back to cJSON when the scan
 * refuses; tests/fuzz/fuzz_json_scan.c checks both directions.
 *
 * Spans always index the buffer given to the scan call that produced them. */
#ifndef IAS_JSON_SCAN_H
#define IAS_JSON_SCAN_H

#include "ias/common.h"

enum {
    IAS_JSON_SCAN_MAX_DEPTH = 1000, /* nested arrays/objects */
    IAS_JSON_SCAN_MAX_NUMBER = 63,  /* bytes in one number token */
    IAS_JSON_DONE = 1,              /* ias_json_scan_next: the container ended */
};

typedef enum {
    IAS_JSON_NONE = 0,
    IAS_JSON_NULL,
    IAS_JSON_FALSE,
    IAS_JSON_TRUE,
    IAS_JSON_NUMBER,
    IAS_JSON_STRING,
    IAS_JSON_ARRAY,
    IAS_JSON_OBJECT,
} ias_json_type;

/* Bytes [off, off + len) of the input: a whole token, quotes and brackets
 * included, whitespace around it excluded. */
typedef struct ias_json_span {
    size_t off, len;
} ias_json_span;

/* One object member or array element, as ias_json_scan_next returns it. A
 * scalar value is scanned already (value is its token); an array or object is
 * not (value.len is 0, value.off its opening bracket) until the caller skips
 * or enters it. */
typedef struct ias_json_item {
    ias_json_span key; /* objects: the key's string token; arrays: {0, 0} */
    ias_json_span value;
    ias_json_type type;
} ias_json_item;

/* Iterates over one array or object. The caller either leaves an item's value
 * alone (the next ias_json_scan_next scans past it) or walks into it with a
 * child cursor from ias_json_scan_enter and ends that with ias_json_scan_leave.
 * No allocation; nesting is counted, not stacked. */
typedef struct ias_json_cursor {
    const char *s;
    size_t len;
    size_t pos;       /* next byte to look at */
    size_t value_off; /* the container the caller was handed and did not enter */
    int depth;        /* containers open, this one included */
    char close;       /* '}' or ']' */
    bool pending;     /* value_off still has to be scanned */
    bool started;     /* an item was returned */
    bool done;        /* the closing bracket was read */
    bool root;        /* opened on a whole document: only whitespace may follow */
} ias_json_cursor;

/* Scans the one value that starts at s[off] (no whitespace before it): on
 * success *end is the offset just past it and *type its type. IAS_ERR when
 * the bytes are not a valid value (or nest deeper than depth_left). */
int ias_json_scan_value(const char *s, size_t len, size_t off, int depth_left, size_t *end,
                        ias_json_type *type) IAS_MUSTCHECK;

/* True when s[0..len) is exactly one JSON value with optional whitespace
 * around it; *type (may be NULL) gets its type and *span (may be NULL) the
 * value's bytes. */
bool ias_json_scan_document(const char *s, size_t len, ias_json_type *type, ias_json_span *span);

/* Opens the whole document s[0..len) as an object or array (whitespace around
 * it allowed). IAS_ERR when it starts with anything else. The bytes after the
 * container are checked by the final ias_json_scan_next. */
int ias_json_scan_open(ias_json_cursor *cur, const char *s, size_t len) IAS_MUSTCHECK;

/* The next member (object) or element (array). Returns IAS_OK with *item
 * filled, IAS_JSON_DONE after the closing bracket (for a document opened with
 * ias_json_scan_open: and nothing but whitespace after it), IAS_ERR on invalid
 * bytes (the cursor is then unusable). */
int ias_json_scan_next(ias_json_cursor *cur, ias_json_item *item) IAS_MUSTCHECK;

/* Scans past the container of the item just returned (ias_json_scan_next does
 * it anyway) to learn its span. IAS_ERR when its bytes are invalid. */
int ias_json_scan_skip(ias_json_cursor *cur, ias_json_span *span) IAS_MUSTCHECK;

/* Walks into the value of the item just returned, which must be an array or
 * object: child iterates it; call ias_json_scan_leave(cur, child) once child
 * returned IAS_JSON_DONE. IAS_ERR when the value is no container or nests too
 * deep. */
int ias_json_scan_enter(ias_json_cursor *cur, ias_json_cursor *child) IAS_MUSTCHECK;
void ias_json_scan_leave(ias_json_cursor *cur, const ias_json_cursor *child);

/* Lists the members of the object document s[0..len) in order, duplicates
 * included: up to max of them go to m (key, whole value span, type), *n gets
 * the total count. IAS_ERR when s is not exactly one valid object. */
int ias_json_scan_object(const char *s, size_t len, ias_json_item *m, size_t max,
                         size_t *n) IAS_MUSTCHECK;

/* ---- decoding a span found by a successful scan ---- */

/* Decodes the string token at span (quotes included) into out[0..cap) as
 * UTF-8, NUL-terminated, cut to cap - 1 bytes. Returns the decoded length
 * (without the cut, like snprintf); \u0000 decodes to a NUL byte, so
 * strlen(out) < the result says the string holds one. */
size_t ias_json_scan_string(const char *s, ias_json_span str, char *out, size_t cap);

/* True when the key (a string token) is lit as cJSON compares keys: the decoded
 * bytes up to their first NUL equal lit. A key without escapes is compared in
 * place. lit must be shorter than 64 bytes. */
bool ias_json_scan_key_is(const char *s, ias_json_span key, const char *lit);

/* True when the string token decodes to at least one byte and its first
 * decoded byte is not NUL (cJSON's valuestring[0] != '\0'). */
bool ias_json_scan_string_nonempty(const char *s, ias_json_span str);

/* A number token as cJSON reads it (strtod, the C locale's '.'). */
int ias_json_scan_number(const char *s, ias_json_span num, double *out) IAS_MUSTCHECK;

/* A number token that is an integer (no fraction, no exponent) within the range
 * of long long; IAS_ERR otherwise. */
int ias_json_scan_int(const char *s, ias_json_span num, long long *out) IAS_MUSTCHECK;

/* true / false tokens; IAS_ERR for anything else. */
int ias_json_scan_bool(const char *s, ias_json_span tok, bool *out) IAS_MUSTCHECK;

#endif
