/* PII detectors for prompt redaction: e-mail, phone, card (Luhn), IBAN
 * (mod 97) and API-key-looking strings. Hand-written scanners (linear) except
 * the API-key shapes, which are one POSIX regex. */
#include "guardrail_internal.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

typedef struct span {
    size_t so, eo;
    unsigned kind;
} span;

typedef struct spans {
    span *v;
    size_t n, cap;
} spans;

static bool overlaps(const spans *s, size_t so, size_t eo)
{
    for (size_t i = 0; i < s->n; i++)
        if (so < s->v[i].eo && s->v[i].so < eo)
            return true;
    return false;
}

static void add(spans *s, size_t so, size_t eo, unsigned kind)
{
    if (overlaps(s, so, eo))
        return;
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 8;
        s->v = ias_xrealloc(s->v, s->cap * sizeof(span));
    }
    s->v[s->n++] = (span){so, eo, kind};
}

bool ias_guardrail_luhn_ok(const char *digits, size_t n)
{
    int sum = 0, nd = 0;
    bool dbl = false;
    for (size_t i = n; i-- > 0;) {
        int d;
        if (!isdigit((unsigned char)digits[i]))
            continue;
        d = digits[i] - '0';
        if (dbl) {
            d *= 2;
            if (d > 9)
                d -= 9;
        }
        sum += d;
        dbl = !dbl;
        nd++;
    }
    return nd > 0 && sum % 10 == 0;
}

bool ias_guardrail_iban_ok(const char *s, size_t n)
{
    char buf[40];
    size_t len = 0;
    unsigned rem = 0;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            continue;
        if (!isalnum((unsigned char)s[i]) || len >= 34)
            return false;
        buf[len++] = (char)toupper((unsigned char)s[i]);
    }
    if (len < 15 || !isalpha((unsigned char)buf[0]) || !isalpha((unsigned char)buf[1]) ||
        !isdigit((unsigned char)buf[2]) || !isdigit((unsigned char)buf[3]))
        return false;
    /* Move the first four characters to the end, letters become 10..35, mod 97 == 1. */
    for (size_t k = 0; k < len; k++) {
        char c = buf[(k + 4) % len];
        if (isdigit((unsigned char)c)) {
            rem = (rem * 10 + (unsigned)(c - '0')) % 97;
        } else {
            unsigned v = (unsigned)(c - 'A') + 10;
            rem = (rem * 100 + v) % 97;
        }
    }
    return rem == 1;
}

static bool is_word(unsigned char c)
{
    return isalnum(c) || c == '_';
}

/* Card: 13..19 digits, single space or dash between groups, Luhn-valid. */
static void scan_cards(const char *t, size_t len, spans *out)
{
    for (size_t i = 0; i < len; i++) {
        size_t j = i, nd = 0, last = i;
        if (!isdigit((unsigned char)t[i]) || (i > 0 && is_word((unsigned char)t[i - 1])))
            continue;
        while (j < len) {
            if (isdigit((unsigned char)t[j])) {
                nd++;
                last = j + 1;
                j++;
            } else if ((t[j] == ' ' || t[j] == '-') && j + 1 < len &&
                       isdigit((unsigned char)t[j + 1])) {
                j++;
            } else {
                break;
            }
            if (nd > 19)
                break;
        }
        if (nd >= 13 && nd <= 19 && !(last < len && is_word((unsigned char)t[last])) &&
            ias_guardrail_luhn_ok(t + i, last - i)) {
            add(out, i, last, IAS_GR_PII_CARD);
            i = last;
        }
    }
}

/* IBAN: CCdd + up to 30 alphanumerics (spaces between groups), the longest
 * prefix that passes mod 97. */
static void scan_ibans(const char *t, size_t len, spans *out)
{
    for (size_t i = 0; i + 15 <= len; i++) {
        size_t ends[40], ne = 0, j = i + 4, nchars = 4;
        if ((i > 0 && is_word((unsigned char)t[i - 1])) || !isupper((unsigned char)t[i]) ||
            !isupper((unsigned char)t[i + 1]) || !isdigit((unsigned char)t[i + 2]) ||
            !isdigit((unsigned char)t[i + 3]))
            continue;
        while (j < len && nchars < 34) {
            if (isalnum((unsigned char)t[j])) {
                nchars++;
                j++;
                if (j == len || !isalnum((unsigned char)t[j]))
                    ends[ne++] = j;
            } else if (t[j] == ' ' && j + 1 < len && isalnum((unsigned char)t[j + 1])) {
                j++;
            } else {
                break;
            }
        }
        while (ne > 0) {
            size_t e = ends[--ne];
            if (ias_guardrail_iban_ok(t + i, e - i)) {
                add(out, i, e, IAS_GR_PII_IBAN);
                i = e;
                break;
            }
        }
    }
}

static bool email_local(unsigned char c)
{
    return isalnum(c) || strchr("._%+-", c) != NULL;
}

static void scan_emails(const char *t, size_t len, spans *out)
{
    for (size_t at = 0; at < len; at++) {
        size_t s = at, e = at + 1, lastdot = 0;
        if (t[at] != '@')
            continue;
        while (s > 0 && email_local((unsigned char)t[s - 1]) && t[s - 1] != '\0')
            s--;
        if (s == at)
            continue;
        while (e < len && (isalnum((unsigned char)t[e]) || t[e] == '-' || t[e] == '.')) {
            if (t[e] == '.')
                lastdot = e;
            e++;
        }
        while (e > at + 1 && (t[e - 1] == '.' || t[e - 1] == '-'))
            e--;
        if (lastdot == 0 || lastdot >= e - 2 || lastdot == at + 1)
            continue;
        add(out, s, e, IAS_GR_PII_EMAIL);
        at = e;
    }
}

/* Phone: optional +, digits with spaces, dots, dashes or parentheses between;
 * 9..15 digits (8..15 after a +), ending in a digit. */
static void scan_phones(const char *t, size_t len, spans *out)
{
    for (size_t i = 0; i < len; i++) {
        bool plus = t[i] == '+';
        size_t j = plus ? i + 1 : i, nd = 0, last = 0;
        if (!(plus || isdigit((unsigned char)t[i]) || t[i] == '(') ||
            (i > 0 && is_word((unsigned char)t[i - 1])))
            continue;
        while (j < len && nd <= 15) {
            unsigned char c = (unsigned char)t[j];
            if (isdigit(c)) {
                nd++;
                last = j + 1;
            } else if (!(c == ' ' || c == '-' || c == '.' || c == '(' || c == ')')) {
                break;
            } else if (j + 1 < len && strchr(" -.()", t[j + 1]) != NULL && c != ')' &&
                       t[j + 1] != '(') {
                break; /* two separators in a row end the number */
            }
            j++;
        }
        if (last == 0 || nd > 15 || nd < (plus ? 8u : 9u) ||
            (last < len && is_word((unsigned char)t[last])))
            continue;
        add(out, i, last, IAS_GR_PII_PHONE);
        i = last;
    }
}

static const char api_key_re[] =
    "(sk-[A-Za-z0-9_-]{16,}|ias_[A-Za-z0-9]{6,}\\.[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}"
    "|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35}"
    "|eyJ[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}\\.[A-Za-z0-9_-]{8,}"
    "|[Bb]earer [A-Za-z0-9._~+/=-]{20,})";

static void scan_api_keys(const char *t, size_t len, spans *out)
{
    regex_t re;
    size_t pos = 0, so, eo;
    if (regcomp(&re, api_key_re, REG_EXTENDED) != 0)
        ias_die("guardrail: API key regex does not compile");
    while (pos < len && gr_regex_find(&re, t, pos, len, pos > 0, &so, &eo) && eo > so) {
        add(out, so, eo, IAS_GR_PII_API_KEY);
        pos = eo;
    }
    regfree(&re);
}

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->so < y->so ? -1 : x->so > y->so;
}

static const char *replacement(unsigned kind)
{
    switch (kind) {
    case IAS_GR_PII_EMAIL:
        return "[REDACTED_EMAIL]";
    case IAS_GR_PII_PHONE:
        return "[REDACTED_PHONE]";
    case IAS_GR_PII_CARD:
        return "[REDACTED_CARD]";
    case IAS_GR_PII_IBAN:
        return "[REDACTED_IBAN]";
    default:
        return "[REDACTED_API_KEY]";
    }
}

size_t ias_guardrail_redact_pii(const char *text, unsigned mask, char **out, size_t *outlen)
{
    size_t len = strlen(text), cap, o = 0, pos = 0, n;
    spans s = {0};
    char *buf;

    /* Most specific first: a card number must not be taken for a phone. */
    if (mask & IAS_GR_PII_API_KEY)
        scan_api_keys(text, len, &s);
    if (mask & IAS_GR_PII_CARD)
        scan_cards(text, len, &s);
    if (mask & IAS_GR_PII_IBAN)
        scan_ibans(text, len, &s);
    if (mask & IAS_GR_PII_EMAIL)
        scan_emails(text, len, &s);
    if (mask & IAS_GR_PII_PHONE)
        scan_phones(text, len, &s);
    if (s.n > 1)
        qsort(s.v, s.n, sizeof(span), span_cmp);
    cap = len + s.n * 24 + 1;
    buf = ias_xmalloc(cap);
    for (size_t i = 0; i < s.n; i++) {
        const char *r = replacement(s.v[i].kind);
        size_t rl = strlen(r);
        memcpy(buf + o, text + pos, s.v[i].so - pos);
        o += s.v[i].so - pos;
        memcpy(buf + o, r, rl);
        o += rl;
        pos = s.v[i].eo;
    }
    memcpy(buf + o, text + pos, len - pos);
    o += len - pos;
    buf[o] = '\0';
    *out = buf;
    *outlen = o;
    n = s.n;
    free(s.v);
    return n;
}
