/* Table, record and JSON output, and problem printing. No terminal library:
 * widths are counted in UTF-8 characters, control characters in API data are
 * replaced so a hostile name cannot move the cursor or change colours. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Copies s replacing C0/DEL control characters (and ESC) by '?'. */
static char *sanitize(const char *s)
{
    char *out = ias_xstrdup(s);
    for (char *p = out; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f)
            *p = '?';
    }
    return out;
}

static size_t utf8_width(const char *s)
{
    size_t n = 0;
    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    }
    return n;
}

static const cJSON *lookup(const cJSON *obj, const char *field)
{
    char part[128];
    const char *p = field;
    const cJSON *cur = obj;

    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof(part))
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        cur = cJSON_IsObject(cur) ? cJSON_GetObjectItemCaseSensitive(cur, part) : NULL;
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

static char *render(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return ias_xstrdup("-");
    if (cJSON_IsString(v))
        return sanitize(v->valuestring);
    if (cJSON_IsBool(v))
        return ias_xstrdup(cJSON_IsTrue(v) ? "true" : "false");
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 9007199254740992.0)
            return ias_xasprintf("%.0f", d);
        return ias_xasprintf("%.15g", d);
    }
    if (cJSON_IsArray(v)) {
        size_t cap = 64, len = 0;
        char *out = ias_xmalloc(cap);
        const cJSON *it;
        out[0] = '\0';
        cJSON_ArrayForEach(it, v)
        {
            char *s = cJSON_IsObject(it) ? NULL : render(it);
            /* Objects in a list cell: their name (or url, or id) reads better
             * than their JSON; -o json has the rest. */
            static const char *const keys[] = {"name", "url", "id"};
            for (size_t k = 0; !s && k < IAS_ARRAY_LEN(keys); k++) {
                const cJSON *m = cJSON_GetObjectItemCaseSensitive(it, keys[k]);
                if (cJSON_IsString(m))
                    s = sanitize(m->valuestring);
            }
            if (!s) {
                char *raw = cJSON_PrintUnformatted(it);
                s = sanitize(raw ? raw : "?");
                cJSON_free(raw);
            }
            size_t sl = strlen(s);
            while (len + sl + 2 > cap) {
                cap *= 2;
                out = ias_xrealloc(out, cap);
            }
            if (len > 0)
                out[len++] = ',';
            memcpy(out + len, s, sl + 1);
            len += sl;
            free(s);
        }
        if (len == 0) {
            free(out);
            return ias_xstrdup("-");
        }
        return out;
    }
    char *raw = cJSON_PrintUnformatted(v);
    char *out = sanitize(raw ? raw : "?");
    cJSON_free(raw);
    return out;
}

char *admin_cell(const cJSON *obj, const char *field)
{
    return render(lookup(obj, field));
}

static void pad(FILE *f, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fputc(' ', f);
}

void admin_table(FILE *f, const admin_col *cols, size_t ncols, const cJSON *rows)
{
    size_t nrows = (size_t)cJSON_GetArraySize(rows);
    size_t *width = ias_xcalloc(ncols ? ncols : 1, sizeof(*width));
    char **cells = ias_xcalloc(nrows * ncols + 1, sizeof(*cells));
    const cJSON *row;
    size_t r = 0;

    for (size_t c = 0; c < ncols; c++)
        width[c] = utf8_width(cols[c].header);
    cJSON_ArrayForEach(row, rows)
    {
        for (size_t c = 0; c < ncols; c++) {
            char *s = admin_cell(row, cols[c].field);
            size_t w = utf8_width(s);
            if (w > width[c])
                width[c] = w;
            cells[r * ncols + c] = s;
        }
        r++;
    }
    for (size_t i = 0; i <= nrows; i++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = i == 0 ? cols[c].header : cells[(i - 1) * ncols + c];
            fputs(s, f);
            if (c + 1 < ncols)
                pad(f, width[c] - utf8_width(s) + 2);
        }
        fputc('\n', f);
    }
    for (size_t i = 0; i < nrows * ncols; i++)
        free(cells[i]);
    free(cells);
    free(width);
}

static bool listed(const admin_col *cols, size_t ncols, const char *name)
{
    for (size_t c = 0; c < ncols; c++) {
        if (strcmp(cols[c].field, name) == 0)
            return true;
    }
    return false;
}

void admin_record(FILE *f, const admin_col *cols, size_t ncols, const cJSON *obj)
{
    size_t w = 0;
    const cJSON *it;

    for (size_t c = 0; c < ncols; c++) {
        if (utf8_width(cols[c].header) > w)
            w = utf8_width(cols[c].header);
    }
    cJSON_ArrayForEach(it, obj)
    {
        if (it->string && !listed(cols, ncols, it->string) && utf8_width(it->string) > w)
            w = utf8_width(it->string);
    }
    for (size_t c = 0; c < ncols; c++) {
        char *s = admin_cell(obj, cols[c].field);
        fprintf(f, "%s", cols[c].header);
        pad(f, w - utf8_width(cols[c].header) + 2);
        fprintf(f, "%s\n", s);
        free(s);
    }
    /* Members the column list does not name still matter in a detail view. */
    cJSON_ArrayForEach(it, obj)
    {
        if (!it->string || listed(cols, ncols, it->string))
            continue;
        char *key = sanitize(it->string);
        char *s = render(it);
        fprintf(f, "%s", key);
        pad(f, w - utf8_width(key) + 2);
        fprintf(f, "%s\n", s);
        free(s);
        free(key);
    }
}

void admin_json(FILE *f, const cJSON *json)
{
    char *s = cJSON_Print(json);
    if (!s) {
        fputs("null\n", f);
        return;
    }
    fprintf(f, "%s\n", s);
    cJSON_free(s);
}

const cJSON *admin_list_items(const cJSON *body)
{
    if (cJSON_IsArray(body))
        return body;
    if (!cJSON_IsObject(body))
        return NULL;
    static const char *const names[] = {"data", "items", "results"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(names); i++) {
        const cJSON *a = cJSON_GetObjectItemCaseSensitive(body, names[i]);
        if (cJSON_IsArray(a))
            return a;
    }
    return NULL;
}

void admin_print_problem(FILE *f, long status, const char *body, size_t len)
{
    cJSON *j = body && len > 0 ? cJSON_ParseWithLength(body, len) : NULL;
    const cJSON *title = j ? cJSON_GetObjectItemCaseSensitive(j, "title") : NULL;
    const cJSON *detail = j ? cJSON_GetObjectItemCaseSensitive(j, "detail") : NULL;
    const cJSON *oai = j ? cJSON_GetObjectItemCaseSensitive(j, "error") : NULL;
    const cJSON *rid = j ? cJSON_GetObjectItemCaseSensitive(j, "request_id") : NULL;

    if (cJSON_IsObject(oai))
        detail = cJSON_GetObjectItemCaseSensitive(oai, "message");
    char *t = sanitize(cJSON_IsString(title) ? title->valuestring : "request failed");
    fprintf(f, "error: %s (HTTP %ld)", t, status);
    free(t);
    if (cJSON_IsString(detail) && detail->valuestring[0]) {
        char *d = sanitize(detail->valuestring);
        fprintf(f, ": %s", d);
        free(d);
    } else if (!j && body && len > 0) {
        /* Not JSON (a proxy page?): show the start of it. */
        char buf[201];
        size_t n = len < 200 ? len : 200;
        memcpy(buf, body, n);
        buf[n] = '\0';
        char *d = sanitize(buf);
        fprintf(f, ": %s", d);
        free(d);
    }
    if (cJSON_IsString(rid)) {
        char *id = sanitize(rid->valuestring);
        fprintf(f, " [request_id %s]", id);
        free(id);
    }
    fputc('\n', f);
    cJSON_Delete(j);
}
