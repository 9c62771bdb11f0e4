/* Guardrail profiles: compile (validate) and the prompt-side checks. */
#include "guardrail_internal.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool gr_regex_find(const regex_t *re, const char *buf, size_t from, size_t to, bool notbol,
                   size_t *so, size_t *eo)
{
    regmatch_t m[1];
    m[0].rm_so = (regoff_t)from;
    m[0].rm_eo = (regoff_t)to;
    if (regexec(re, buf, 1, m, REG_STARTEND | (notbol ? REG_NOTBOL : 0)) != 0)
        return false;
    *so = (size_t)m[0].rm_so;
    *eo = (size_t)m[0].rm_eo;
    return true;
}

static void rules_free(gr_rule *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(r[i].id);
        free(r[i].message);
        free(r[i].replacement);
        regfree(&r[i].re);
    }
    free(r);
}

void ias_guardrail_free(ias_guardrail *g)
{
    if (g == NULL)
        return;
    rules_free(g->prompt_deny, g->nprompt_deny);
    rules_free(g->output, g->noutput);
    free(g->name);
    free(g);
}

const char *ias_guardrail_name(const ias_guardrail *g)
{
    return g->name;
}

size_t ias_guardrail_holdback(const ias_guardrail *g)
{
    return g->holdback;
}

size_t ias_guardrail_output_rules(const ias_guardrail *g)
{
    return g->noutput;
}

size_t ias_guardrail_prompt_rules(const ias_guardrail *g)
{
    return g->nprompt_deny + (g->redact_mask != 0 ? 1 : 0);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

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

/* A literal phrase as an extended regex. */
static char *escape_phrase(const char *s)
{
    size_t n = strlen(s);
    char *out = ias_xmalloc(2 * n + 1), *p = out;
    for (; *s; s++) {
        if (strchr(".[]{}()\\*+?^$|", *s) != NULL)
            *p++ = '\\';
        *p++ = *s;
    }
    *p = '\0';
    return out;
}

/* Parses one rule: {"id", "phrase"|"regex", "case_insensitive", ...}. */
static int parse_rule(const cJSON *r, const char *path, bool output, size_t holdback, gr_rule *out,
                      char *err, size_t errlen)
{
    static const char *const pkeys[] = {"id", "phrase", "regex", "case_insensitive", "message"};
    static const char *const okeys[] = {"id",     "phrase",           "regex",
                                        "action", "case_insensitive", "replacement"};
    const cJSON *id, *phrase, *regex, *ci, *action, *msg, *repl;
    char *pattern;
    int flags = REG_EXTENDED, rc;
    char rerr[160];
    size_t so, eo;

    if (!cJSON_IsObject(r))
        return fail(err, errlen, "%s: must be an object", path);
    if (only_keys(r, path, output ? okeys : pkeys,
                  output ? IAS_ARRAY_LEN(okeys) : IAS_ARRAY_LEN(pkeys), err, errlen) != IAS_OK)
        return IAS_ERR;
    id = cJSON_GetObjectItemCaseSensitive(r, "id");
    if (!cJSON_IsString(id) || id->valuestring[0] == '\0' || strlen(id->valuestring) > 64)
        return fail(err, errlen, "%s.id: required, a string of 1..64 bytes", path);
    phrase = cJSON_GetObjectItemCaseSensitive(r, "phrase");
    regex = cJSON_GetObjectItemCaseSensitive(r, "regex");
    if ((phrase == NULL) == (regex == NULL))
        return fail(err, errlen, "%s: exactly one of phrase and regex is required", path);
    if (phrase != NULL && (!cJSON_IsString(phrase) || phrase->valuestring[0] == '\0' ||
                           strlen(phrase->valuestring) > IAS_GR_MAX_PATTERN))
        return fail(err, errlen, "%s.phrase: a string of 1..%d bytes", path, IAS_GR_MAX_PATTERN);
    if (regex != NULL && (!cJSON_IsString(regex) || regex->valuestring[0] == '\0' ||
                          strlen(regex->valuestring) > IAS_GR_MAX_PATTERN))
        return fail(err, errlen, "%s.regex: a string of 1..%d bytes", path, IAS_GR_MAX_PATTERN);
    ci = cJSON_GetObjectItemCaseSensitive(r, "case_insensitive");
    if (ci != NULL && !cJSON_IsBool(ci))
        return fail(err, errlen, "%s.case_insensitive: must be true or false", path);
    if (cJSON_IsTrue(ci))
        flags |= REG_ICASE;
    if (output) {
        action = cJSON_GetObjectItemCaseSensitive(r, "action");
        if (cJSON_IsString(action) && strcmp(action->valuestring, "deny") == 0)
            out->deny = true;
        else if (!(cJSON_IsString(action) && strcmp(action->valuestring, "redact") == 0))
            return fail(err, errlen, "%s.action: required, \"deny\" or \"redact\"", path);
        repl = cJSON_GetObjectItemCaseSensitive(r, "replacement");
        if (repl != NULL && (out->deny || !cJSON_IsString(repl) || strlen(repl->valuestring) > 256))
            return fail(err, errlen, "%s.replacement: a string of at most 256 bytes, redact only",
                        path);
        out->replacement = ias_xstrdup(repl != NULL ? repl->valuestring : "[REDACTED]");
        if (phrase != NULL && utf8_chars(phrase->valuestring) > holdback)
            return fail(err, errlen, "%s.phrase: longer than the hold-back window (%zu characters)",
                        path, holdback);
    } else {
        out->deny = true;
        msg = cJSON_GetObjectItemCaseSensitive(r, "message");
        if (msg != NULL && (!cJSON_IsString(msg) || strlen(msg->valuestring) > 500))
            return fail(err, errlen, "%s.message: a string of at most 500 bytes", path);
        out->message = ias_xstrdup(msg != NULL ? msg->valuestring : "");
    }
    out->id = ias_xstrdup(id->valuestring);
    if (regex != NULL) {
        /* Back-references make matching exponential; POSIX ERE does not need them. */
        for (const char *p = regex->valuestring; *p; p++) {
            if (*p == '\\' && p[1] != '\0') {
                if (isdigit((unsigned char)p[1]))
                    return fail(err, errlen, "%s.regex: back-references are not allowed", path);
                p++;
            }
        }
    }
    pattern = phrase != NULL ? escape_phrase(phrase->valuestring) : ias_xstrdup(regex->valuestring);
    rc = regcomp(&out->re, pattern, flags);
    free(pattern);
    if (rc != 0) {
        regerror(rc, &out->re, rerr, sizeof(rerr));
        memset(&out->re, 0, sizeof(out->re));
        return fail(err, errlen, "%s.regex: invalid regular expression: %s", path, rerr);
    }
    if (gr_regex_find(&out->re, "", 0, 0, false, &so, &eo))
        return fail(err, errlen, "%s.regex: must not match the empty string", path);
    return IAS_OK;
}

static int parse_rules(const cJSON *arr, const char *path, bool output, size_t holdback,
                       gr_rule **rules, size_t *n, char *err, size_t errlen)
{
    const cJSON *it;
    char p[96];
    int cnt;

    if (arr == NULL)
        return IAS_OK;
    if (!cJSON_IsArray(arr))
        return fail(err, errlen, "%s: must be an array", path);
    cnt = cJSON_GetArraySize(arr);
    if (cnt > IAS_GR_MAX_RULES)
        return fail(err, errlen, "%s: at most %d rules", path, IAS_GR_MAX_RULES);
    *rules = ias_xcalloc(cnt > 0 ? (size_t)cnt : 1, sizeof(gr_rule));
    cJSON_ArrayForEach(it, arr)
    {
        snprintf(p, sizeof(p), "%s[%zu]", path, *n);
        /* the array is zeroed: glibc's regfree of a zeroed or failed regex_t is a no-op */
        int rc = parse_rule(it, p, output, holdback, &(*rules)[*n], err, errlen);
        (*n)++;
        if (rc != IAS_OK)
            return IAS_ERR;
        for (size_t j = 0; j + 1 < *n; j++)
            if (strcmp((*rules)[j].id, (*rules)[*n - 1].id) == 0)
                return fail(err, errlen, "%s.id: duplicate rule id \"%s\"", p, (*rules)[*n - 1].id);
    }
    return IAS_OK;
}

int ias_guardrail_compile(const cJSON *doc, const char *name, size_t max_holdback,
                          ias_guardrail **out, char *err, size_t errlen)
{
    static const char *const top[] = {"description", "prompt", "output"};
    static const char *const pk[] = {"deny", "redact"};
    static const char *const ok[] = {"holdback", "rules"};
    static const struct {
        const char *name;
        unsigned bit;
    } kinds[] = {{"email", IAS_GR_PII_EMAIL},
                 {"phone", IAS_GR_PII_PHONE},
                 {"card", IAS_GR_PII_CARD},
                 {"iban", IAS_GR_PII_IBAN},
                 {"api_key", IAS_GR_PII_API_KEY}};
    const cJSON *prompt, *output, *desc, *redact, *hb, *it;
    ias_guardrail *g;
    size_t i = 0;

    *out = NULL;
    if (max_holdback < 1 || max_holdback > IAS_GR_MAX_HOLDBACK)
        return fail(err, errlen, "max_holdback: out of range");
    if (!cJSON_IsObject(doc))
        return fail(err, errlen, "document: must be a JSON object");
    if (only_keys(doc, "", top, IAS_ARRAY_LEN(top), err, errlen) != IAS_OK)
        return IAS_ERR;
    desc = cJSON_GetObjectItemCaseSensitive(doc, "description");
    if (desc != NULL && (!cJSON_IsString(desc) || strlen(desc->valuestring) > 1000))
        return fail(err, errlen, "description: must be a string of at most 1000 bytes");
    g = ias_xcalloc(1, sizeof(*g));
    g->name = ias_xstrdup(name != NULL ? name : "");
    g->holdback = max_holdback;
    prompt = cJSON_GetObjectItemCaseSensitive(doc, "prompt");
    if (prompt != NULL) {
        if (!cJSON_IsObject(prompt)) {
            fail(err, errlen, "prompt: must be an object");
            goto bad;
        }
        if (only_keys(prompt, "prompt", pk, IAS_ARRAY_LEN(pk), err, errlen) != IAS_OK)
            goto bad;
        if (parse_rules(cJSON_GetObjectItemCaseSensitive(prompt, "deny"), "prompt.deny", false,
                        max_holdback, &g->prompt_deny, &g->nprompt_deny, err, errlen) != IAS_OK)
            goto bad;
        redact = cJSON_GetObjectItemCaseSensitive(prompt, "redact");
        if (redact != NULL && !cJSON_IsArray(redact)) {
            fail(err, errlen,
                 "prompt.redact: must be an array of email, phone, card, iban, "
                 "api_key");
            goto bad;
        }
        cJSON_ArrayForEach(it, redact)
        {
            unsigned bit = 0;
            for (size_t k = 0; k < IAS_ARRAY_LEN(kinds) && cJSON_IsString(it); k++)
                if (strcmp(it->valuestring, kinds[k].name) == 0)
                    bit = kinds[k].bit;
            if (bit == 0) {
                fail(err, errlen,
                     "prompt.redact[%zu]: must be one of email, phone, card, iban, api_key", i);
                goto bad;
            }
            g->redact_mask |= bit;
            i++;
        }
    }
    output = cJSON_GetObjectItemCaseSensitive(doc, "output");
    if (output != NULL) {
        if (!cJSON_IsObject(output)) {
            fail(err, errlen, "output: must be an object");
            goto bad;
        }
        if (only_keys(output, "output", ok, IAS_ARRAY_LEN(ok), err, errlen) != IAS_OK)
            goto bad;
        hb = cJSON_GetObjectItemCaseSensitive(output, "holdback");
        if (hb != NULL) {
            if (!cJSON_IsNumber(hb) || hb->valuedouble < 1 ||
                hb->valuedouble > (double)max_holdback || hb->valuedouble != (double)hb->valueint) {
                fail(err, errlen, "output.holdback: an integer in 1..%zu (characters)",
                     max_holdback);
                goto bad;
            }
            g->holdback = (size_t)hb->valueint;
        }
        if (parse_rules(cJSON_GetObjectItemCaseSensitive(output, "rules"), "output.rules", true,
                        g->holdback, &g->output, &g->noutput, err, errlen) != IAS_OK)
            goto bad;
    }
    *out = g;
    return IAS_OK;
bad:
    ias_guardrail_free(g);
    return IAS_ERR;
}

static void add_violation(ias_gr_prompt_result *res, const char *profile, const char *rule,
                          bool deny)
{
    if (res->nv < IAS_GR_MAX_VIOLATIONS)
        res->v[res->nv++] = (ias_gr_violation){profile, rule, deny};
}

int ias_guardrail_prompt(const ias_guardrail *g, const char *text, char **out, size_t *outlen,
                         ias_gr_prompt_result *res)
{
    static const struct {
        unsigned bit;
        const char *id;
    } kinds[] = {{IAS_GR_PII_EMAIL, "pii:email"},
                 {IAS_GR_PII_PHONE, "pii:phone"},
                 {IAS_GR_PII_CARD, "pii:card"},
                 {IAS_GR_PII_IBAN, "pii:iban"},
                 {IAS_GR_PII_API_KEY, "pii:api_key"}};
    size_t len = strlen(text), so, eo, n;

    *out = NULL;
    *outlen = 0;
    for (size_t i = 0; i < g->nprompt_deny; i++) {
        if (gr_regex_find(&g->prompt_deny[i].re, text, 0, len, false, &so, &eo)) {
            res->deny = true;
            res->message = g->prompt_deny[i].message;
            add_violation(res, g->name, g->prompt_deny[i].id, true);
            return IAS_OK;
        }
    }
    if (g->redact_mask == 0) {
        *out = ias_xstrndup(text, len);
        *outlen = len;
        return IAS_OK;
    }
    /* Redact one kind at a time so each violation names its kind. */
    char *cur = ias_xstrndup(text, len);
    size_t curlen = len;
    for (size_t k = 0; k < IAS_ARRAY_LEN(kinds); k++) {
        char *next;
        if (!(g->redact_mask & kinds[k].bit))
            continue;
        n = ias_guardrail_redact_pii(cur, kinds[k].bit, &next, &curlen);
        free(cur);
        cur = next;
        if (n > 0) {
            res->nredactions += n;
            add_violation(res, g->name, kinds[k].id, false);
        }
    }
    *out = cur;
    *outlen = curlen;
    return IAS_OK;
}
