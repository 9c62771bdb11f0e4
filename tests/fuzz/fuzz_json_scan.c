/* Fuzzes the strict JSON scanner against cJSON. The input is one document.
 *
 *   - whatever the scanner accepts, cJSON accepts, and a walk with cursors
 *     through every container finds the same tree (types, keys in order,
 *     strings, numbers) as cJSON built;
 *   - whatever cJSON accepts (with only whitespace after it) and the scanner
 *     refuses uses one of cJSON's documented leniencies (ias/json_scan.h);
 *   - the document cJSON prints back is always accepted;
 *   - the cursor walk and the one-pass scan agree on validity. */
#include "ias/json_scan.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *scratch; /* decoded strings, size of the input + 1 */
static size_t scratch_cap;

static bool is_strict_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static bool is_num_char(char c)
{
    return (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.' || c == 'e' || c == 'E';
}

/* The strict grammar of a whole run of number characters. */
static bool strict_number(const char *p, size_t n)
{
    size_t i = 0;

    if (n > IAS_JSON_SCAN_MAX_NUMBER)
        return false;
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || p[i] < '0' || p[i] > '9')
        return false;
    if (p[i] == '0')
        i++;
    else
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    if (i < n && p[i] == '.') {
        if (++i >= n || p[i] < '0' || p[i] > '9')
            return false;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || p[i] < '0' || p[i] > '9')
            return false;
        while (i < n && p[i] >= '0' && p[i] <= '9')
            i++;
    }
    return i == n;
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* Does a document cJSON accepted use something the scanner refuses on
 * purpose: a control byte (as whitespace or in a string), a BOM, a \u escape
 * with non-hex digits, or a number outside the strict grammar? */
static bool lenient(const char *s, size_t n)
{
    bool in_str = false;

    if (n >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            return true;
        if (c < 0x20 && in_str)
            return true;
        if (in_str) {
            if (c == '\\' && i + 1 < n) {
                if (s[i + 1] == 'u') {
                    for (size_t k = i + 2; k < i + 6; k++)
                        if (k >= n || hexv(s[k]) < 0)
                            return true;
                }
                i++;
            } else if (c == '"') {
                in_str = false;
            }
            continue;
        }
        if (c == '"') {
            in_str = true;
        } else if (is_num_char((char)c) &&
                   (i == 0 || !((s[i - 1] | 0x20) >= 'a' && (s[i - 1] | 0x20) <= 'z'))) {
            size_t j = i;
            while (j < n && is_num_char(s[j]))
                j++;
            if (!strict_number(s + i, j - i))
                return true;
            i = j - 1;
        }
    }
    return false;
}

static ias_json_type cjson_type(const cJSON *j)
{
    if (cJSON_IsNull(j))
        return IAS_JSON_NULL;
    if (cJSON_IsFalse(j))
        return IAS_JSON_FALSE;
    if (cJSON_IsTrue(j))
        return IAS_JSON_TRUE;
    if (cJSON_IsNumber(j))
        return IAS_JSON_NUMBER;
    if (cJSON_IsString(j))
        return IAS_JSON_STRING;
    if (cJSON_IsArray(j))
        return IAS_JSON_ARRAY;
    if (cJSON_IsObject(j))
        return IAS_JSON_OBJECT;
    return IAS_JSON_NONE;
}

/* A scalar span against cJSON's value. */
static void check_scalar(const char *s, ias_json_span v, ias_json_type t, const cJSON *j)
{
    if (t != cjson_type(j))
        abort();
    if (t == IAS_JSON_STRING) {
        (void)ias_json_scan_string(s, v, scratch, scratch_cap);
        if (strcmp(scratch, j->valuestring) != 0)
            abort();
        if (ias_json_scan_string_nonempty(s, v) != (j->valuestring[0] != '\0'))
            abort();
    } else if (t == IAS_JSON_NUMBER) {
        double d;
        long long ll;
        if (ias_json_scan_number(s, v, &d) != IAS_OK || d != j->valuedouble)
            abort();
        if (ias_json_scan_int(s, v, &ll) == IAS_OK && ll > -(1LL << 52) && ll < (1LL << 52) &&
            (double)ll != j->valuedouble)
            abort();
    } else if (t == IAS_JSON_TRUE || t == IAS_JSON_FALSE) {
        bool b;
        if (ias_json_scan_bool(s, v, &b) != IAS_OK || b != (t == IAS_JSON_TRUE))
            abort();
    }
}

/* Walks cur (a container) through every level. With j (cJSON's matching node)
 * every item is compared; returns false when the scanner refused the bytes. */
static bool walk(ias_json_cursor *cur, const char *s, const cJSON *j)
{
    const cJSON *child = j ? j->child : NULL;
    ias_json_item it;
    int rc;

    while ((rc = ias_json_scan_next(cur, &it)) == IAS_OK) {
        if (j != NULL) {
            if (child == NULL)
                abort(); /* more items than cJSON found */
            if (cJSON_IsObject(j)) {
                (void)ias_json_scan_string(s, it.key, scratch, scratch_cap);
                if (child->string == NULL || strcmp(scratch, child->string) != 0)
                    abort();
                if (strlen(child->string) < 60 && !ias_json_scan_key_is(s, it.key, child->string))
                    abort();
            }
        }
        if (it.type == IAS_JSON_ARRAY || it.type == IAS_JSON_OBJECT) {
            ias_json_cursor sub;
            if (j != NULL && it.type != cjson_type(child))
                abort();
            if (ias_json_scan_enter(cur, &sub) != IAS_OK)
                return false; /* too deep */
            if (!walk(&sub, s, j ? child : NULL))
                return false;
            ias_json_scan_leave(cur, &sub);
        } else if (j != NULL) {
            check_scalar(s, it.value, it.type, child);
        }
        if (child != NULL)
            child = child->next;
    }
    if (rc != IAS_JSON_DONE)
        return false;
    if (child != NULL)
        abort(); /* fewer items than cJSON found */
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data, *end = NULL;
    ias_json_type t;
    ias_json_span span;
    ias_json_cursor cur;
    bool ok, cj_ok, walk_ok = false;
    cJSON *j;

    if (size > 1 << 20)
        return 0;
    if (scratch_cap < size + 1) {
        free(scratch);
        scratch_cap = size + 1;
        scratch = malloc(scratch_cap);
        if (scratch == NULL)
            abort();
    }
    ok = ias_json_scan_document(s, size, &t, &span);
    j = size > 0 ? cJSON_ParseWithLengthOpts(s, size, &end, 0) : NULL;
    cj_ok = j != NULL;
    if (cj_ok)
        for (const char *p = end; p < s + size; p++)
            if (!is_strict_ws(*p))
                cj_ok = false;

    if (ok && !cj_ok)
        abort();
    if (!ok && cj_ok && !lenient(s, size))
        abort();
    if (ias_json_scan_open(&cur, s, size) == IAS_OK)
        walk_ok = walk(&cur, s, ok ? j : NULL);
    if (ok && (t == IAS_JSON_ARRAY || t == IAS_JSON_OBJECT) != walk_ok)
        abort();
    if (!ok && walk_ok)
        abort();
    if (ok && t != IAS_JSON_ARRAY && t != IAS_JSON_OBJECT)
        check_scalar(s, span, t, j);
    if (ok && t == IAS_JSON_OBJECT) {
        ias_json_item m[8];
        size_t n = 0;
        const cJSON *c = j->child;

        if (ias_json_scan_object(s, size, m, 8, &n) != IAS_OK || n != (size_t)cJSON_GetArraySize(j))
            abort();
        for (size_t i = 0; i < n && i < 8; i++, c = c->next) {
            (void)ias_json_scan_string(s, m[i].key, scratch, scratch_cap);
            if (strcmp(scratch, c->string) != 0 || m[i].type != cjson_type(c))
                abort();
            if (!ias_json_scan_document(s + m[i].value.off, m[i].value.len, NULL, NULL))
                abort();
        }
    }
    if (cj_ok) {
        char *printed = cJSON_PrintUnformatted(j);
        if (printed != NULL && !ias_json_scan_document(printed, strlen(printed), NULL, NULL))
            abort();
        free(printed);
    }
    cJSON_Delete(j);
    return 0;
}
