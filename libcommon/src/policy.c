/* ABAC policy documents: compile (validate) and evaluate. See ias/policy.h and
 * docs/architecture/pdp.md for the format. */
#include "ias/policy.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct strlist {
    bool present;
    char **v;
    size_t n;
} strlist;

typedef struct cidr {
    int family; /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int bits;
} cidr;

typedef struct pmatch {
    bool present;
    strlist user_id, role, org_id, action, model, tags, region;
    bool has_time;
    uint8_t days; /* bit 0 = Sunday (tm_wday) */
    int from_min, to_min;
    bool has_cidr;
    cidr *cidrs;
    size_t ncidrs;
    char *canon; /* canonical text for conflict detection */
} pmatch;

typedef struct prule {
    char *id;
    ias_policy_effect effect;
    char *message;
    pmatch match, except;
    char **obligations;
    size_t nobligations;
} prule;

struct ias_policy {
    ias_policy_scope scope;
    char *id;
    int version;
    bool default_deny;
    prule *rules;
    size_t nrules;
};

static const char *const day_names[7] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

/* ------------------------------------------------------------ errors */

static int fail(char *err, size_t errlen, const char *fmt, ...) IAS_PRINTF(3, 4);
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (err != NULL && errlen > 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return IAS_ERR;
}

/* ------------------------------------------------------------ freeing */

static void strlist_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

static void pmatch_free(pmatch *m)
{
    strlist_free(&m->user_id);
    strlist_free(&m->role);
    strlist_free(&m->org_id);
    strlist_free(&m->action);
    strlist_free(&m->model);
    strlist_free(&m->tags);
    strlist_free(&m->region);
    free(m->cidrs);
    free(m->canon);
    memset(m, 0, sizeof(*m));
}

void ias_policy_free(ias_policy *p)
{
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->nrules; i++) {
        prule *r = &p->rules[i];
        free(r->id);
        free(r->message);
        pmatch_free(&r->match);
        pmatch_free(&r->except);
        for (size_t j = 0; j < r->nobligations; j++)
            free(r->obligations[j]);
        free(r->obligations);
    }
    free(p->rules);
    free(p->id);
    free(p);
}

/* ------------------------------------------------------------ parsing helpers */

static bool valid_token(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && strchr(extra, c) == NULL)
            return false;
    }
    return true;
}

/* Checks that obj has only the allowed keys; names the first unknown one. */
static int only_keys(const cJSON *obj, const char *path, const char *const *keys, size_t nkeys,
                     char *err, size_t errlen)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        bool ok = false;
        for (size_t i = 0; i < nkeys && !ok; i++)
            ok = strcmp(it->string, keys[i]) == 0;
        if (!ok)
            return fail(err, errlen, "%s%s%s: unknown attribute", path, path[0] ? "." : "",
                        it->string);
    }
    return IAS_OK;
}

typedef bool (*item_check)(const char *s);

static int parse_strlist(const cJSON *arr, const char *path, item_check check, strlist *out,
                         char *err, size_t errlen)
{
    int n;
    const cJSON *it;
    size_t i = 0;

    if (arr == NULL)
        return IAS_OK;
    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "%s: must be an array of strings", path);
    n = cJSON_GetArraySize(arr);
    if (n == 0)
        return fail(err, errlen, "%s: must not be empty (leave the attribute out to match any)",
                    path);
    if (n > IAS_POLICY_MAX_LIST)
        return fail(err, errlen, "%s: at most %d items", path, IAS_POLICY_MAX_LIST);
    out->present = true;
    out->v = ias_xcalloc((size_t)n, sizeof(char *));
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it) || it->valuestring[0] == '\0' ||
            strlen(it->valuestring) > IAS_POLICY_MAX_STR)
            return fail(err, errlen, "%s[%zu]: must be a non-empty string of at most %d bytes",
                        path, i, IAS_POLICY_MAX_STR);
        if (check != NULL && !check(it->valuestring))
            return fail(err, errlen, "%s[%zu]: invalid value \"%s\"", path, i, it->valuestring);
        out->v[i++] = ias_xstrdup(it->valuestring);
        out->n = i;
    }
    return IAS_OK;
}

static bool check_action(const char *s)
{
    if (strcmp(s, "*") == 0 || strcmp(s, "inference") == 0 || strcmp(s, "manage:*") == 0)
        return true;
    return strncmp(s, "manage:", 7) == 0 && valid_token(s + 7, 64, "_-.");
}

static bool check_plain(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20)
            return false;
    return true;
}

static bool check_profile_name(const char *s)
{
    if (!valid_token(s, 63, "_-"))
        return false;
    for (; *s; s++)
        if (isupper((unsigned char)*s))
            return false;
    return true;
}

static int parse_hhmm(const char *s, int *out)
{
    int h, m;
    char extra;
    if (strlen(s) != 5 || s[2] != ':' || !isdigit((unsigned char)s[0]) ||
        !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[3]) ||
        !isdigit((unsigned char)s[4]))
        return IAS_ERR;
    if (sscanf(s, "%2d:%2d%c", &h, &m, &extra) != 2)
        return IAS_ERR;
    if (h > 24 || m > 59 || (h == 24 && m != 0))
        return IAS_ERR;
    *out = h * 60 + m;
    return IAS_OK;
}

static int parse_cidr(const char *s, cidr *out)
{
    char buf[64];
    char *slash, *end;
    long bits;
    int maxbits;

    if (ias_strlcpy(buf, s, sizeof(buf)) != IAS_OK)
        return IAS_ERR;
    memset(out, 0, sizeof(*out));
    slash = strchr(buf, '/');
    if (slash != NULL)
        *slash = '\0';
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        maxbits = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        maxbits = 128;
    } else {
        return IAS_ERR;
    }
    if (slash == NULL) {
        out->bits = maxbits;
        return IAS_OK;
    }
    if (!isdigit((unsigned char)slash[1]))
        return IAS_ERR;
    bits = strtol(slash + 1, &end, 10);
    if (*end != '\0' || bits < 0 || bits > maxbits)
        return IAS_ERR;
    out->bits = (int)bits;
    return IAS_OK;
}

/* Parses an address, folding IPv4-mapped IPv6 (::ffff:a.b.c.d) to IPv4. */
static int parse_ip(const char *s, cidr *out)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, s, out->addr) == 1) {
        out->family = AF_INET;
        out->bits = 32;
        return IAS_OK;
    }
    if (inet_pton(AF_INET6, s, out->addr) == 1) {
        out->family = AF_INET6;
        out->bits = 128;
        if (memcmp(out->addr, mapped, 12) == 0) {
            memmove(out->addr, out->addr + 12, 4);
            memset(out->addr + 4, 0, 12);
            out->family = AF_INET;
            out->bits = 32;
        }
        return IAS_OK;
    }
    return IAS_ERR;
}

static bool cidr_contains(const cidr *net, const cidr *ip)
{
    int full, rest;
    if (net->family != ip->family)
        return false;
    full = net->bits / 8;
    rest = net->bits % 8;
    if (memcmp(net->addr, ip->addr, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (net->addr[full] & mask) == (ip->addr[full] & mask);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends "name=sorted,items;" so equal sets give equal text. */
static void canon_list(char **canon, const char *name, const strlist *l)
{
    char **sorted;
    char *s;
    if (!l->present)
        return;
    sorted = ias_xcalloc(l->n, sizeof(char *));
    memcpy(sorted, l->v, l->n * sizeof(char *));
    qsort(sorted, l->n, sizeof(char *), cmp_str);
    s = ias_xasprintf("%s%s=", *canon, name);
    free(*canon);
    *canon = s;
    for (size_t i = 0; i < l->n; i++) {
        if (i > 0 && strcmp(sorted[i], sorted[i - 1]) == 0)
            continue;
        s = ias_xasprintf("%s%s\x1f", *canon, sorted[i]);
        free(*canon);
        *canon = s;
    }
    s = ias_xasprintf("%s;", *canon);
    free(*canon);
    *canon = s;
    free(sorted);
}

static void build_canon(pmatch *m, const strlist *cidr_text)
{
    char *s;
    m->canon = ias_xstrdup("");
    canon_list(&m->canon, "u", &m->user_id);
    canon_list(&m->canon, "r", &m->role);
    canon_list(&m->canon, "o", &m->org_id);
    canon_list(&m->canon, "a", &m->action);
    canon_list(&m->canon, "m", &m->model);
    canon_list(&m->canon, "t", &m->tags);
    canon_list(&m->canon, "g", &m->region);
    canon_list(&m->canon, "c", cidr_text);
    if (m->has_time) {
        s = ias_xasprintf("%sT=%u,%d,%d;", m->canon, m->days, m->from_min, m->to_min);
        free(m->canon);
        m->canon = s;
    }
}

static int parse_time_window(const cJSON *t, const char *path, pmatch *m, char *err, size_t errlen)
{
    static const char *const keys[] = {"days", "from", "to"};
    const cJSON *days = cJSON_GetObjectItemCaseSensitive(t, "days");
    const cJSON *from = cJSON_GetObjectItemCaseSensitive(t, "from");
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(t, "to");
    const cJSON *it;
    size_t i = 0;

    if (!cJSON_IsObject(t))
        return fail(err, errlen, "%s: must be an object", path);
    if (only_keys(t, path, keys, IAS_ARRAY_LEN(keys), err, errlen) != IAS_OK)
        return IAS_ERR;
    m->has_time = true;
    m->days = 0x7f;
    m->from_min = 0;
    m->to_min = 24 * 60;
    if (days != NULL) {
        if (!cJSON_IsArray(days) || cJSON_GetArraySize(days) == 0)
            return fail(err, errlen, "%s.days: must be a non-empty array of mon..sun", path);
        m->days = 0;
        cJSON_ArrayForEach(it, days)
        {
            int d = -1;
            for (int k = 0; k < 7 && cJSON_IsString(it); k++)
                if (strcmp(it->valuestring, day_names[k]) == 0)
                    d = k;
            if (d < 0)
                return fail(err, errlen, "%s.days[%zu]: must be one of mon tue wed thu fri sat sun",
                            path, i);
            m->days |= (uint8_t)(1u << d);
            i++;
        }
    }
    if (from != NULL && (!cJSON_IsString(from) || parse_hhmm(from->valuestring, &m->from_min)))
        return fail(err, errlen, "%s.from: must be \"HH:MM\" (UTC)", path);
    if (to != NULL && (!cJSON_IsString(to) || parse_hhmm(to->valuestring, &m->to_min)))
        return fail(err, errlen, "%s.to: must be \"HH:MM\" (UTC)", path);
    if (m->from_min == m->to_min)
        return fail(err, errlen, "%s: from and to must differ", path);
    return IAS_OK;
}

static int parse_match(const cJSON *obj, const char *path, ias_policy_scope scope, pmatch *m,
                       char *err, size_t errlen)
{
    static const char *const top[] = {"subject", "action", "resource", "environment"};
    static const char *const subj_keys[] = {"user_id", "role", "org_id"};
    static const char *const res_keys[] = {"model", "tags"};
    static const char *const env_keys[] = {"time", "source_cidr", "region"};
    const cJSON *subj, *res, *env, *c, *it;
    char p[160];
    strlist cidr_text = {0};
    size_t i = 0;
    int rc = IAS_ERR;

    if (obj == NULL)
        return IAS_OK;
    if (!cJSON_IsObject(obj))
        return fail(err, errlen, "%s: must be an object", path);
    if (only_keys(obj, path, top, IAS_ARRAY_LEN(top), err, errlen) != IAS_OK)
        return IAS_ERR;
    m->present = true;
    subj = cJSON_GetObjectItemCaseSensitive(obj, "subject");
    res = cJSON_GetObjectItemCaseSensitive(obj, "resource");
    env = cJSON_GetObjectItemCaseSensitive(obj, "environment");

    snprintf(p, sizeof(p), "%s.action", path);
    if (parse_strlist(cJSON_GetObjectItemCaseSensitive(obj, "action"), p, check_action, &m->action,
                      err, errlen) != IAS_OK)
        return IAS_ERR;
    if (subj != NULL) {
        snprintf(p, sizeof(p), "%s.subject", path);
        if (!cJSON_IsObject(subj))
            return fail(err, errlen, "%s: must be an object", p);
        if (only_keys(subj, p, subj_keys, IAS_ARRAY_LEN(subj_keys), err, errlen) != IAS_OK)
            return IAS_ERR;
        if (scope == IAS_POLICY_ORG && cJSON_GetObjectItemCaseSensitive(subj, "org_id") != NULL)
            return fail(err, errlen,
                        "%s.org_id: not allowed in an org policy (it applies to its org only)", p);
        snprintf(p, sizeof(p), "%s.subject.user_id", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(subj, "user_id"), p, check_plain,
                          &m->user_id, err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(p, sizeof(p), "%s.subject.role", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(subj, "role"), p, check_plain, &m->role,
                          err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(p, sizeof(p), "%s.subject.org_id", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(subj, "org_id"), p, check_plain,
                          &m->org_id, err, errlen) != IAS_OK)
            return IAS_ERR;
    }
    if (res != NULL) {
        snprintf(p, sizeof(p), "%s.resource", path);
        if (!cJSON_IsObject(res))
            return fail(err, errlen, "%s: must be an object", p);
        if (only_keys(res, p, res_keys, IAS_ARRAY_LEN(res_keys), err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(p, sizeof(p), "%s.resource.model", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(res, "model"), p, check_plain, &m->model,
                          err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(p, sizeof(p), "%s.resource.tags", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(res, "tags"), p, check_plain, &m->tags,
                          err, errlen) != IAS_OK)
            return IAS_ERR;
    }
    if (env != NULL) {
        snprintf(p, sizeof(p), "%s.environment", path);
        if (!cJSON_IsObject(env))
            return fail(err, errlen, "%s: must be an object", p);
        if (only_keys(env, p, env_keys, IAS_ARRAY_LEN(env_keys), err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(p, sizeof(p), "%s.environment.region", path);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(env, "region"), p, check_plain,
                          &m->region, err, errlen) != IAS_OK)
            return IAS_ERR;
        c = cJSON_GetObjectItemCaseSensitive(env, "time");
        snprintf(p, sizeof(p), "%s.environment.time", path);
        if (c != NULL && parse_time_window(c, p, m, err, errlen) != IAS_OK)
            return IAS_ERR;
        c = cJSON_GetObjectItemCaseSensitive(env, "source_cidr");
        snprintf(p, sizeof(p), "%s.environment.source_cidr", path);
        if (parse_strlist(c, p, NULL, &cidr_text, err, errlen) != IAS_OK)
            goto out;
        if (cidr_text.present) {
            m->has_cidr = true;
            m->cidrs = ias_xcalloc(cidr_text.n, sizeof(cidr));
            m->ncidrs = cidr_text.n;
            cJSON_ArrayForEach(it, c)
            {
                if (parse_cidr(it->valuestring, &m->cidrs[i]) != IAS_OK) {
                    fail(err, errlen, "%s[%zu]: \"%s\" is not an IPv4/IPv6 address or CIDR", p, i,
                         it->valuestring);
                    goto out;
                }
                i++;
            }
        }
    }
    build_canon(m, &cidr_text);
    rc = IAS_OK;
out:
    strlist_free(&cidr_text);
    return rc;
}

static int parse_rule(const cJSON *r, size_t idx, ias_policy_scope scope, prule *out, char *err,
                      size_t errlen)
{
    static const char *const keys[] = {"id",    "description", "effect",     "message",
                                       "match", "except",      "obligations"};
    static const char *const obl_keys[] = {"guardrails"};
    const cJSON *id, *effect, *msg, *desc, *obl;
    char p[64], q[128];
    strlist names = {0};

    snprintf(p, sizeof(p), "rules[%zu]", idx);
    if (!cJSON_IsObject(r))
        return fail(err, errlen, "%s: must be an object", p);
    if (only_keys(r, p, keys, IAS_ARRAY_LEN(keys), err, errlen) != IAS_OK)
        return IAS_ERR;
    id = cJSON_GetObjectItemCaseSensitive(r, "id");
    if (!cJSON_IsString(id) || !valid_token(id->valuestring, 64, "_-.:"))
        return fail(err, errlen, "%s.id: required, 1..64 characters of [A-Za-z0-9_.:-]", p);
    out->id = ias_xstrdup(id->valuestring);
    effect = cJSON_GetObjectItemCaseSensitive(r, "effect");
    if (cJSON_IsString(effect) && strcmp(effect->valuestring, "allow") == 0)
        out->effect = IAS_EFFECT_ALLOW;
    else if (cJSON_IsString(effect) && strcmp(effect->valuestring, "deny") == 0)
        out->effect = IAS_EFFECT_DENY;
    else
        return fail(err, errlen, "%s.effect: required, \"allow\" or \"deny\"", p);
    msg = cJSON_GetObjectItemCaseSensitive(r, "message");
    if (msg != NULL && (!cJSON_IsString(msg) || strlen(msg->valuestring) > 500))
        return fail(err, errlen, "%s.message: must be a string of at most 500 bytes", p);
    out->message = ias_xstrdup(msg != NULL ? msg->valuestring : "");
    desc = cJSON_GetObjectItemCaseSensitive(r, "description");
    if (desc != NULL && (!cJSON_IsString(desc) || strlen(desc->valuestring) > 1000))
        return fail(err, errlen, "%s.description: must be a string of at most 1000 bytes", p);
    snprintf(q, sizeof(q), "%s.match", p);
    if (parse_match(cJSON_GetObjectItemCaseSensitive(r, "match"), q, scope, &out->match, err,
                    errlen) != IAS_OK)
        return IAS_ERR;
    snprintf(q, sizeof(q), "%s.except", p);
    if (parse_match(cJSON_GetObjectItemCaseSensitive(r, "except"), q, scope, &out->except, err,
                    errlen) != IAS_OK)
        return IAS_ERR;
    obl = cJSON_GetObjectItemCaseSensitive(r, "obligations");
    if (obl != NULL) {
        snprintf(q, sizeof(q), "%s.obligations", p);
        if (out->effect != IAS_EFFECT_ALLOW)
            return fail(err, errlen, "%s: only an allow rule carries obligations", q);
        if (!cJSON_IsObject(obl))
            return fail(err, errlen, "%s: must be an object", q);
        if (only_keys(obl, q, obl_keys, IAS_ARRAY_LEN(obl_keys), err, errlen) != IAS_OK)
            return IAS_ERR;
        snprintf(q, sizeof(q), "%s.obligations.guardrails", p);
        if (parse_strlist(cJSON_GetObjectItemCaseSensitive(obl, "guardrails"), q,
                          check_profile_name, &names, err, errlen) != IAS_OK) {
            strlist_free(&names);
            return IAS_ERR;
        }
        if (names.n > IAS_POLICY_MAX_OBLIGATIONS) {
            strlist_free(&names);
            return fail(err, errlen, "%s: at most %d profiles", q, IAS_POLICY_MAX_OBLIGATIONS);
        }
        out->obligations = names.v;
        out->nobligations = names.n;
    }
    return IAS_OK;
}

int ias_policy_compile(const cJSON *doc, ias_policy_scope scope, const char *policy_id, int version,
                       ias_policy **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"description", "default_effect", "rules"};
    const cJSON *rules, *def, *desc, *it;
    ias_policy *p;
    size_t i = 0;
    int n;

    *out = NULL;
    if (!cJSON_IsObject(doc))
        return fail(err, errlen, "document: must be a JSON object");
    if (only_keys(doc, "", keys, IAS_ARRAY_LEN(keys), err, errlen) != IAS_OK)
        return IAS_ERR;
    desc = cJSON_GetObjectItemCaseSensitive(doc, "description");
    if (desc != NULL && (!cJSON_IsString(desc) || strlen(desc->valuestring) > 1000))
        return fail(err, errlen, "description: must be a string of at most 1000 bytes");
    def = cJSON_GetObjectItemCaseSensitive(doc, "default_effect");
    if (def != NULL && !(cJSON_IsString(def) && (strcmp(def->valuestring, "allow") == 0 ||
                                                 strcmp(def->valuestring, "deny") == 0)))
        return fail(err, errlen, "default_effect: must be \"allow\" or \"deny\"");
    rules = cJSON_GetObjectItemCaseSensitive(doc, "rules");
    if (!cJSON_IsArray(rules))
        return fail(err, errlen, "rules: required, an array of rules");
    n = cJSON_GetArraySize(rules);
    if (n > IAS_POLICY_MAX_RULES)
        return fail(err, errlen, "rules: at most %d rules", IAS_POLICY_MAX_RULES);

    p = ias_xcalloc(1, sizeof(*p));
    p->scope = scope;
    p->id = policy_id != NULL ? ias_xstrdup(policy_id) : NULL;
    p->version = version;
    p->default_deny = def != NULL && strcmp(def->valuestring, "deny") == 0;
    p->rules = ias_xcalloc(n > 0 ? (size_t)n : 1, sizeof(prule));
    cJSON_ArrayForEach(it, rules)
    {
        p->nrules = i + 1;
        if (parse_rule(it, i, scope, &p->rules[i], err, errlen) != IAS_OK)
            goto bad;
        for (size_t j = 0; j < i; j++) {
            const prule *a = &p->rules[j], *b = &p->rules[i];
            if (strcmp(a->id, b->id) == 0) {
                fail(err, errlen, "rules[%zu].id: duplicate rule id \"%s\" (also rules[%zu])", i,
                     b->id, j);
                goto bad;
            }
            if (a->effect != b->effect && a->match.present == b->match.present &&
                a->except.present == b->except.present &&
                (!a->match.present || strcmp(a->match.canon, b->match.canon) == 0) &&
                (!a->except.present || strcmp(a->except.canon, b->except.canon) == 0)) {
                fail(err, errlen,
                     "rules[%zu].match: conflicts with rules[%zu] (\"%s\"): same match, "
                     "opposite effect",
                     i, j, a->id);
                goto bad;
            }
        }
        i++;
    }
    *out = p;
    return IAS_OK;
bad:
    ias_policy_free(p);
    return IAS_ERR;
}

int ias_policy_version(const ias_policy *p)
{
    return p->version;
}

const char *ias_policy_id(const ias_policy *p)
{
    return p->id;
}

size_t ias_policy_nrules(const ias_policy *p)
{
    return p->nrules;
}

size_t ias_policy_obligation_names(const ias_policy *p, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < p->nrules; i++) {
        for (size_t j = 0; j < p->rules[i].nobligations; j++) {
            const char *name = p->rules[i].obligations[j];
            bool seen = false;
            for (size_t k = 0; k < n && !seen; k++)
                seen = strcmp(names[k], name) == 0;
            if (!seen && n < max)
                names[n++] = name;
        }
    }
    return n;
}

/* ------------------------------------------------------------ evaluation */

typedef struct eval_env {
    const ias_policy_request *req;
    bool has_ip;
    cidr ip;
    int wday, minute;
} eval_env;

/* Items ending in '*' match by prefix ("manage:*", "llama-*"). */
static bool item_matches(const char *pat, const char *value)
{
    size_t n = strlen(pat);
    if (n > 0 && pat[n - 1] == '*')
        return strncmp(pat, value, n - 1) == 0;
    return strcmp(pat, value) == 0;
}

static bool list_has(const strlist *l, const char *value)
{
    if (!l->present)
        return true;
    if (value == NULL)
        return false;
    for (size_t i = 0; i < l->n; i++)
        if (item_matches(l->v[i], value))
            return true;
    return false;
}

static bool list_any(const strlist *l, const char *const *values, size_t n)
{
    if (!l->present)
        return true;
    for (size_t i = 0; i < n; i++)
        if (list_has(l, values[i]))
            return true;
    return false;
}

static bool time_matches(const pmatch *m, const eval_env *e)
{
    if (!(m->days & (1u << e->wday)))
        return false;
    if (m->from_min < m->to_min)
        return e->minute >= m->from_min && e->minute < m->to_min;
    /* wraps midnight: 22:00-06:00 */
    return e->minute >= m->from_min || e->minute < m->to_min;
}

static bool match_all(const pmatch *m, const eval_env *e)
{
    const ias_policy_request *r = e->req;
    if (!m->present)
        return true;
    if (!list_has(&m->user_id, r->user_id) || !list_has(&m->role, r->role) ||
        !list_has(&m->org_id, r->org_id) || !list_has(&m->action, r->action) ||
        !list_has(&m->model, r->model) || !list_any(&m->tags, r->tags, r->ntags) ||
        !list_has(&m->region, r->region))
        return false;
    if (m->has_time && !time_matches(m, e))
        return false;
    if (m->has_cidr) {
        bool hit = false;
        if (!e->has_ip)
            return false;
        for (size_t i = 0; i < m->ncidrs && !hit; i++)
            hit = cidr_contains(&m->cidrs[i], &e->ip);
        if (!hit)
            return false;
    }
    return true;
}

static bool rule_matches(const prule *r, const eval_env *e)
{
    return match_all(&r->match, e) && !(r->except.present && match_all(&r->except, e));
}

static void add_reason(ias_policy_decision *d, const char *rule_id, const char *policy_id,
                       ias_policy_effect effect, const char *message)
{
    if (d->nreasons >= IAS_POLICY_MAX_REASONS)
        return;
    d->reasons[d->nreasons++] = (ias_policy_reason){rule_id, policy_id, effect, message};
}

static void add_obligation(ias_policy_decision *d, const char *name, ias_policy_scope scope)
{
    for (size_t i = 0; i < d->nobligations; i++)
        if (d->obligation_scope[i] == scope && strcmp(d->obligations[i], name) == 0)
            return;
    if (d->nobligations < IAS_POLICY_MAX_OBLIGATIONS) {
        d->obligations[d->nobligations] = name;
        d->obligation_scope[d->nobligations++] = scope;
    }
}

static void eval_policy(const ias_policy *p, const eval_env *e, ias_policy_decision *d)
{
    bool allowed = false;
    for (size_t i = 0; i < p->nrules; i++) {
        const prule *r = &p->rules[i];
        if (!rule_matches(r, e))
            continue;
        add_reason(d, r->id, p->id, r->effect, r->message);
        if (r->effect == IAS_EFFECT_DENY) {
            d->allow = false;
        } else {
            allowed = true;
            for (size_t j = 0; j < r->nobligations; j++)
                add_obligation(d, r->obligations[j], p->scope);
        }
    }
    if (p->default_deny && !allowed) {
        d->allow = false;
        add_reason(d, "default", p->id, IAS_EFFECT_DENY,
                   p->scope == IAS_POLICY_GLOBAL
                       ? "no allow rule of the global policy matched (default_effect deny)"
                       : "no allow rule of the org policy matched (default_effect deny)");
    }
}

void ias_policy_evaluate(const ias_policy *global, const ias_policy *org,
                         const ias_policy_request *req, ias_policy_decision *out)
{
    eval_env e = {.req = req};
    struct tm tm;
    time_t t = (time_t)req->time_s;

    memset(out, 0, sizeof(*out));
    out->allow = true;
    if (req->source_ip != NULL && parse_ip(req->source_ip, &e.ip) == IAS_OK)
        e.has_ip = true;
    if (gmtime_r(&t, &tm) != NULL) {
        e.wday = tm.tm_wday;
        e.minute = tm.tm_hour * 60 + tm.tm_min;
    }
    /* The built-in default rule: inference needs the model in allowed_models. */
    if (req->action != NULL && strcmp(req->action, "inference") == 0) {
        bool ok = false;
        if (req->allowed_models == NULL) {
            out->allow = false;
            add_reason(out, "builtin:allowed_models", NULL, IAS_EFFECT_DENY,
                       "subject.allowed_models is absent: no model is allowed");
        } else if (req->model == NULL) {
            out->allow = false;
            add_reason(out, "builtin:allowed_models", NULL, IAS_EFFECT_DENY,
                       "resource.model is required for inference");
        } else {
            for (size_t i = 0; i < req->nallowed_models && !ok; i++)
                ok = strcmp(req->allowed_models[i], req->model) == 0;
            if (!ok) {
                out->allow = false;
                add_reason(out, "builtin:allowed_models", NULL, IAS_EFFECT_DENY,
                           "the model is not in the org's allowed models");
            }
        }
    }
    if (global != NULL)
        eval_policy(global, &e, out);
    if (org != NULL)
        eval_policy(org, &e, out);
    if (!out->allow) {
        /* A deny explains itself by its deny reasons only, and carries no obligations. */
        size_t k = 0;
        for (size_t i = 0; i < out->nreasons; i++)
            if (out->reasons[i].effect == IAS_EFFECT_DENY)
                out->reasons[k++] = out->reasons[i];
        out->nreasons = k;
        out->nobligations = 0;
    }
}

/* ------------------------------------------------------------ requests */

int ias_policy_parse_time(const char *s, int64_t *out)
{
    struct tm tm = {0};
    const char *p;
    int consumed = 0, off_h, off_m;
    long long secs;

    if (s == NULL ||
        sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
        consumed != 19)
        return IAS_ERR;
    if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
        tm.tm_min > 59 || tm.tm_sec > 60)
        return IAS_ERR;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return IAS_ERR;
        while (isdigit((unsigned char)*p))
            p++;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    secs = (long long)timegm(&tm);
    if (strcmp(p, "Z") == 0) {
        *out = secs;
        return IAS_OK;
    }
    if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':' &&
        sscanf(p + 1, "%2d:%2d", &off_h, &off_m) == 2 && off_h <= 23 && off_m <= 59) {
        long long off = (long long)off_h * 3600 + off_m * 60;
        *out = *p == '+' ? secs - off : secs + off;
        return IAS_OK;
    }
    return IAS_ERR;
}

static int opt_string(const cJSON *obj, const char *key, const char *path, const char **out,
                      char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (v == NULL || cJSON_IsNull(v))
        return IAS_OK;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > IAS_POLICY_MAX_STR)
        return fail(err, errlen, "%s.%s: must be a string of at most %d bytes", path, key,
                    IAS_POLICY_MAX_STR);
    *out = v->valuestring;
    return IAS_OK;
}

static int opt_strarray(const cJSON *obj, const char *key, const char *path, const char **arr,
                        size_t cap, const char *const **out, size_t *n, char *err, size_t errlen)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key), *it;
    size_t i = 0;
    *out = NULL;
    *n = 0;
    if (v == NULL || cJSON_IsNull(v))
        return IAS_OK;
    if (!cJSON_IsArray(v))
        return fail(err, errlen, "%s.%s: must be an array of strings", path, key);
    if ((size_t)cJSON_GetArraySize(v) > cap)
        return fail(err, errlen, "%s.%s: at most %zu items", path, key, cap);
    cJSON_ArrayForEach(it, v)
    {
        if (!cJSON_IsString(it))
            return fail(err, errlen, "%s.%s[%zu]: must be a string", path, key, i);
        arr[i++] = it->valuestring;
    }
    *out = arr;
    *n = i;
    return IAS_OK;
}

int ias_policy_request_parse(const cJSON *json, ias_policy_request *req,
                             ias_policy_req_scratch *scratch, char *err, size_t errlen)
{
    const cJSON *subj, *res, *env, *action;
    const char *tstr = NULL;

    memset(req, 0, sizeof(*req));
    if (!cJSON_IsObject(json))
        return fail(err, errlen, "request: must be a JSON object");
    subj = cJSON_GetObjectItemCaseSensitive(json, "subject");
    res = cJSON_GetObjectItemCaseSensitive(json, "resource");
    env = cJSON_GetObjectItemCaseSensitive(json, "environment");
    action = cJSON_GetObjectItemCaseSensitive(json, "action");
    if (!cJSON_IsObject(subj))
        return fail(err, errlen, "subject: required object");
    if (!cJSON_IsString(action) || !check_action(action->valuestring) ||
        strchr(action->valuestring, '*') != NULL)
        return fail(err, errlen, "action: required, \"inference\" or \"manage:<thing>\"");
    req->action = action->valuestring;
    if (opt_string(subj, "user_id", "subject", &req->user_id, err, errlen) != IAS_OK ||
        opt_string(subj, "org_id", "subject", &req->org_id, err, errlen) != IAS_OK ||
        opt_string(subj, "role", "subject", &req->role, err, errlen) != IAS_OK ||
        opt_strarray(subj, "allowed_models", "subject", scratch->models,
                     IAS_ARRAY_LEN(scratch->models), &req->allowed_models, &req->nallowed_models,
                     err, errlen) != IAS_OK)
        return IAS_ERR;
    if (res != NULL && !cJSON_IsNull(res)) {
        if (!cJSON_IsObject(res))
            return fail(err, errlen, "resource: must be an object");
        if (opt_string(res, "model", "resource", &req->model, err, errlen) != IAS_OK ||
            opt_strarray(res, "tags", "resource", scratch->tags, IAS_ARRAY_LEN(scratch->tags),
                         &req->tags, &req->ntags, err, errlen) != IAS_OK)
            return IAS_ERR;
    }
    req->time_s = ias_wall_ms() / 1000;
    if (env != NULL && !cJSON_IsNull(env)) {
        if (!cJSON_IsObject(env))
            return fail(err, errlen, "environment: must be an object");
        if (opt_string(env, "source_ip", "environment", &req->source_ip, err, errlen) != IAS_OK ||
            opt_string(env, "region", "environment", &req->region, err, errlen) != IAS_OK ||
            opt_string(env, "time", "environment", &tstr, err, errlen) != IAS_OK)
            return IAS_ERR;
        if (tstr != NULL && ias_policy_parse_time(tstr, &req->time_s) != IAS_OK)
            return fail(err, errlen, "environment.time: must be ISO 8601 (2026-11-22T10:00:00Z)");
        if (req->source_ip != NULL) {
            cidr tmp;
            if (parse_ip(req->source_ip, &tmp) != IAS_OK)
                return fail(err, errlen, "environment.source_ip: not an IPv4/IPv6 address");
        }
    }
    return IAS_OK;
}
