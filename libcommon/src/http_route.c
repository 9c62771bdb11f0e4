/* Route matching: pure functions over a route table, no allocation.
 *
 * Patterns are '/'-separated segments; a whole segment "{name}" captures one
 * non-empty path segment, a last segment "{*name}" captures the rest of the
 * path (possibly empty, slashes included). Path segments are percent-decoded
 * before they are compared with literals or stored as parameters, so an
 * encoded slash (%2F) stays inside its parameter. First match in table order
 * wins: list literal routes ("/users/me") before parameter routes
 * ("/users/{id}"). HEAD is answered by a GET route. */
#include "ias/http_server.h"
#include "ias/query.h"

#include <stdio.h>
#include <string.h>

typedef enum {
    SEG_LITERAL,
    SEG_PARAM,
    SEG_REST,
} seg_kind;

static seg_kind seg_classify(const char *seg, size_t len, const char **name, size_t *namelen)
{
    if (len >= 3 && seg[0] == '{' && seg[len - 1] == '}') {
        if (seg[1] == '*') {
            *name = seg + 2;
            *namelen = len - 3;
            return SEG_REST;
        }
        *name = seg + 1;
        *namelen = len - 2;
        return SEG_PARAM;
    }
    return SEG_LITERAL;
}

static size_t seg_len(const char *s)
{
    const char *e = strchr(s, '/');
    return e ? (size_t)(e - s) : strlen(s);
}

static bool add_param(ias_route_match *m, const char *name, size_t namelen, const char *raw,
                      size_t rawlen)
{
    if (m->nparams >= IAS_ROUTE_MAX_PARAMS)
        return false;
    if (ias_url_decode(raw, rawlen, false, m->params[m->nparams].value,
                       sizeof(m->params[m->nparams].value)) < 0)
        return false;
    m->params[m->nparams].name = name;
    m->params[m->nparams].name_len = namelen;
    m->nparams++;
    return true;
}

static bool literal_equal(const char *lit, size_t litlen, const char *raw, size_t rawlen)
{
    char dec[256];
    int n;

    if (litlen == rawlen && memcmp(lit, raw, rawlen) == 0)
        return true;
    if (!memchr(raw, '%', rawlen))
        return false;
    n = ias_url_decode(raw, rawlen, false, dec, sizeof(dec));
    return n >= 0 && (size_t)n == litlen && memcmp(dec, lit, litlen) == 0;
}

/* Matches one pattern against a path (both start with '/'); fills m->params. */
static bool match_path(const char *pattern, const char *path, ias_route_match *m)
{
    const char *p = pattern, *s = path;

    m->nparams = 0;
    while (*p) {
        const char *name;
        size_t namelen, plen, slen;
        seg_kind kind;

        if (*p != '/')
            return false;
        p++;
        plen = seg_len(p);
        kind = seg_classify(p, plen, &name, &namelen);
        if (kind == SEG_REST) {
            /* "/x/{*rest}" matches "/x", "/x/" and "/x/a/b" */
            if (*s == '\0')
                return add_param(m, name, namelen, "", 0);
            if (*s != '/')
                return false;
            s++;
            return add_param(m, name, namelen, s, strlen(s));
        }
        if (*s != '/')
            return false;
        s++;
        slen = seg_len(s);
        if (kind == SEG_PARAM) {
            if (slen == 0 || !add_param(m, name, namelen, s, slen))
                return false;
        } else if (!literal_equal(p, plen, s, slen)) {
            return false;
        }
        p += plen;
        s += slen;
    }
    return *s == '\0';
}

static bool method_matches(const char *route_method, const char *method)
{
    if (strcmp(route_method, method) == 0)
        return true;
    return strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0;
}

int ias_route_find(const ias_route *routes, size_t nroutes, const char *method, const char *path,
                   ias_route_match *m)
{
    bool path_seen = false;

    m->route = -1;
    m->nparams = 0;
    if (!path || path[0] != '/' || !method)
        return -1;
    for (size_t i = 0; i < nroutes; i++) {
        bool mok = method_matches(routes[i].method, method);

        /* once some route has the path, only a route with the method can change the answer */
        if (!mok && path_seen)
            continue;
        if (!match_path(routes[i].pattern, path, m))
            continue;
        if (mok) {
            m->route = (int)i;
            return m->route;
        }
        path_seen = true;
    }
    m->nparams = 0;
    m->route = path_seen ? -2 : -1;
    return m->route;
}

int ias_route_allow(const ias_route *routes, size_t nroutes, const char *path, char *buf,
                    size_t buflen)
{
    static const char *const order[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    bool have[IAS_ARRAY_LEN(order)] = {false};
    ias_route_match m;
    size_t o = 0;

    if (buflen == 0)
        return IAS_ERR;
    buf[0] = '\0';
    if (!path || path[0] != '/')
        return IAS_OK;
    for (size_t i = 0; i < nroutes; i++) {
        if (!match_path(routes[i].pattern, path, &m))
            continue;
        for (size_t k = 0; k < IAS_ARRAY_LEN(order); k++) {
            if (strcmp(routes[i].method, order[k]) == 0)
                have[k] = true;
        }
        if (strcmp(routes[i].method, "GET") == 0)
            have[1] = true;
    }
    for (size_t k = 0; k < IAS_ARRAY_LEN(order); k++) {
        int n;

        if (!have[k])
            continue;
        n = snprintf(buf + o, buflen - o, "%s%s", o ? ", " : "", order[k]);
        if (n < 0 || (size_t)n >= buflen - o) {
            buf[0] = '\0';
            return IAS_ERR;
        }
        o += (size_t)n;
    }
    return IAS_OK;
}

static bool known_method(const char *m)
{
    static const char *const methods[] = {"GET",   "HEAD",   "POST",   "PUT",
                                          "PATCH", "DELETE", "OPTIONS"};
    for (size_t i = 0; i < IAS_ARRAY_LEN(methods); i++) {
        if (strcmp(m, methods[i]) == 0)
            return true;
    }
    return false;
}

static int route_error(char *err, size_t errlen, size_t i, const ias_route *r, const char *why)
{
    snprintf(err, errlen, "route %zu (%s %s): %s", i, r->method ? r->method : "(null)",
             r->pattern ? r->pattern : "(null)", why);
    return IAS_ERR;
}

int ias_route_validate(const ias_route *routes, size_t nroutes, char *err, size_t errlen)
{
    for (size_t i = 0; i < nroutes; i++) {
        const ias_route *r = &routes[i];
        const char *names[IAS_ROUTE_MAX_PARAMS];
        size_t namelens[IAS_ROUTE_MAX_PARAMS];
        size_t nparams = 0;

        if (!r->method || !known_method(r->method))
            return route_error(err, errlen, i, r, "unknown method");
        if (!r->handler)
            return route_error(err, errlen, i, r, "no handler");
        if (!r->pattern || r->pattern[0] != '/')
            return route_error(err, errlen, i, r, "pattern must start with '/'");
        for (const char *p = r->pattern; *p;) {
            const char *name;
            size_t len, namelen;
            seg_kind kind;

            p++; /* the '/' */
            len = seg_len(p);
            kind = seg_classify(p, len, &name, &namelen);
            if (kind == SEG_LITERAL) {
                if (memchr(p, '{', len) || memchr(p, '}', len) || memchr(p, '?', len) ||
                    memchr(p, '%', len))
                    return route_error(err, errlen, i, r, "braces, '?' or '%' inside a literal");
                p += len;
                continue;
            }
            if (namelen == 0 || memchr(name, '{', namelen) || memchr(name, '}', namelen) ||
                memchr(name, '*', namelen))
                return route_error(err, errlen, i, r, "bad parameter name");
            if (kind == SEG_REST && p[len] != '\0')
                return route_error(err, errlen, i, r, "{*name} must be the last segment");
            if (nparams == IAS_ROUTE_MAX_PARAMS)
                return route_error(err, errlen, i, r, "too many parameters");
            /* duplicate names would make ias_req_param ambiguous */
            for (size_t k = 0; k < nparams; k++) {
                if (namelens[k] == namelen && memcmp(names[k], name, namelen) == 0)
                    return route_error(err, errlen, i, r, "duplicate parameter name");
            }
            names[nparams] = name;
            namelens[nparams] = namelen;
            nparams++;
            p += len;
        }
    }
    return IAS_OK;
}
