/* redis://[[user]:password@]host[:port][/db] parser. Strict on purpose: anything
 * unexpected is a configuration mistake better reported at start. Error messages
 * never quote the userinfo, so a password cannot leak into logs. */
#include "ias/query.h"
#include "ias/redis.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SCHEME "redis://"

static int fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "invalid redis URL: %s", msg);
    return IAS_ERR;
}

/* Percent-decodes [s, s+n) into dst (NUL-terminated); IAS_ERR on a bad escape,
 * an encoded NUL or overflow. */
static int pct_decode(const char *s, size_t n, char *dst, size_t dstlen)
{
    return ias_url_decode(s, n, false, dst, dstlen) >= 0 ? IAS_OK : IAS_ERR;
}

/* Decimal in [min, max], the whole span, no sign, at most 9 digits. */
static int parse_uint(const char *s, size_t n, int min, int max, int *out)
{
    long v = 0;
    if (n == 0 || n > 9)
        return IAS_ERR;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return IAS_ERR;
        v = v * 10 + (s[i] - '0');
    }
    if (v < min || v > max)
        return IAS_ERR;
    *out = (int)v;
    return IAS_OK;
}

static bool host_char(char c, bool ipv6)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    if (ipv6)
        return c == ':' || c == '.'; /* no %zone: link-local Redis is not a use case */
    return c == '.' || c == '-' || c == '_';
}

int ias_redis_url_parse(const char *url, ias_redis_url *out, char *err, size_t errlen)
{
    const char *p, *auth, *auth_end, *at, *hp, *host, *host_end, *port = NULL, *port_end = NULL;
    size_t ulen;
    bool ipv6 = false;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url)
        return fail(err, errlen, "empty");
    ulen = strnlen(url, IAS_REDIS_URL_MAX + 1);
    if (ulen > IAS_REDIS_URL_MAX)
        return fail(err, errlen, "longer than 1024 bytes");
    if (strncasecmp(url, "rediss://", 9) == 0)
        return fail(err, errlen, "rediss:// (TLS) is not supported by hiredis 0.14");
    if (strncasecmp(url, SCHEME, strlen(SCHEME)) != 0)
        return fail(err, errlen, "must start with redis://");
    for (p = url; *p; p++) {
        if (*p == '?' || *p == '#')
            return fail(err, errlen, "query strings and fragments are not supported");
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            return fail(err, errlen, "contains spaces or control characters");
    }

    auth = url + strlen(SCHEME);
    auth_end = strchr(auth, '/');
    if (!auth_end)
        auth_end = auth + strlen(auth);

    /* userinfo: the last '@' of the authority, so an unencoded '@' in a password
     * still parses. */
    at = NULL;
    for (p = auth; p < auth_end; p++) {
        if (*p == '@')
            at = p;
    }
    hp = auth;
    if (at) {
        const char *colon = memchr(auth, ':', (size_t)(at - auth));
        if (!colon)
            return fail(err, errlen, "credentials must be [user]:password@");
        if (pct_decode(auth, (size_t)(colon - auth), out->user, sizeof(out->user)) != IAS_OK)
            return fail(err, errlen, "bad or too long user name");
        if (pct_decode(colon + 1, (size_t)(at - colon - 1), out->password, sizeof(out->password)) !=
            IAS_OK)
            return fail(err, errlen, "bad or too long password");
        if (out->user[0] && !out->password[0])
            return fail(err, errlen, "a user name needs a password");
        hp = at + 1;
    }

    /* host[:port] or [ipv6][:port] */
    if (hp < auth_end && *hp == '[') {
        ipv6 = true;
        host = hp + 1;
        host_end = memchr(host, ']', (size_t)(auth_end - host));
        if (!host_end)
            return fail(err, errlen, "unterminated [IPv6] host");
        p = host_end + 1;
        if (p < auth_end) {
            if (*p != ':')
                return fail(err, errlen, "unexpected text after [IPv6] host");
            port = p + 1;
            port_end = auth_end;
        }
    } else {
        const char *colon = memchr(hp, ':', (size_t)(auth_end - hp));
        host = hp;
        host_end = colon ? colon : auth_end;
        if (colon) {
            port = colon + 1;
            port_end = auth_end;
        }
    }
    if (host_end == host)
        return fail(err, errlen, "missing host");
    if ((size_t)(host_end - host) >= sizeof(out->host))
        return fail(err, errlen, "host name too long");
    for (p = host; p < host_end; p++) {
        if (!host_char(*p, ipv6))
            return fail(err, errlen, "bad character in host");
    }
    memcpy(out->host, host, (size_t)(host_end - host));
    out->host[host_end - host] = '\0';
    if (port && parse_uint(port, (size_t)(port_end - port), 1, 65535, &out->port) != IAS_OK)
        return fail(err, errlen, "port must be 1..65535");

    /* "", "/" or "/<db>" */
    if (*auth_end == '/' && auth_end[1] != '\0') {
        const char *db = auth_end + 1;
        if (parse_uint(db, strlen(db), 0, IAS_REDIS_DB_MAX, &out->db) != IAS_OK)
            return fail(err, errlen, "database must be a number 0..65535");
    }
    return IAS_OK;
}

void ias_redis_url_redact(const ias_redis_url *u, char *buf, size_t len)
{
    bool v6 = strchr(u->host, ':') != NULL;
    const char *cred = u->password[0] ? ":***@" : "";

    snprintf(buf, len, "redis://%s%s%s%s%s:%d/%d", u->user, cred, v6 ? "[" : "", u->host,
             v6 ? "]" : "", u->port, u->db);
}
