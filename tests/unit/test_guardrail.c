/* Guardrails: profile validation, PII redaction (Luhn, IBAN mod 97), and the
 * stream matcher: phrases split at every boundary are caught, UTF-8 is never
 * cut, redaction works across chunks, the hold-back stays bounded. */
#include "testlib.h"

#include "ias/guardrail.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ias_guardrail *compile(const char *json, size_t max_holdback)
{
    cJSON *doc = cJSON_Parse(json);
    ias_guardrail *g = NULL;
    char err[256] = "";
    assert_non_null(doc);
    if (ias_guardrail_compile(doc, "p1", max_holdback, &g, err, sizeof(err)) != IAS_OK)
        fail_msg("compile failed: %s", err);
    cJSON_Delete(doc);
    return g;
}

static void expect_error(const char *json, const char *want)
{
    cJSON *doc = cJSON_Parse(json);
    ias_guardrail *g = NULL;
    char err[256] = "";
    assert_non_null(doc);
    assert_int_equal(ias_guardrail_compile(doc, "x", 16, &g, err, sizeof(err)), IAS_ERR);
    assert_null(g);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    cJSON_Delete(doc);
}

static void test_validation(void **state)
{
    expect_error("{\"colour\":1}", "colour: unknown attribute");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"deny\",\"regex\":\"(a\"}]}}",
                 "output.rules[0].regex: invalid regular expression");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"deny\",\"regex\":\"a*\"}]}}",
                 "must not match the empty string");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"deny\",\"regex\":"
                 "\"(a)\\\\1\"}]}}",
                 "back-references");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"stop\",\"phrase\":\"x\"}]}}",
                 "output.rules[0].action");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"deny\",\"phrase\":"
                 "\"this phrase is longer than sixteen\"}]}}",
                 "longer than the hold-back window");
    expect_error("{\"output\":{\"holdback\":17}}", "output.holdback");
    expect_error("{\"prompt\":{\"redact\":[\"email\",\"ssn\"]}}", "prompt.redact[1]");
    expect_error("{\"prompt\":{\"deny\":[{\"id\":\"a\",\"regex\":\"[\"}]}}",
                 "prompt.deny[0].regex");
    expect_error("{\"output\":{\"rules\":[{\"id\":\"a\",\"action\":\"deny\",\"phrase\":\"x\"},"
                 "{\"id\":\"a\",\"action\":\"deny\",\"phrase\":\"y\"}]}}",
                 "duplicate rule id");
}

static void test_luhn_iban(void **state)
{
    assert_true(ias_guardrail_luhn_ok("4111111111111111", 16));
    assert_true(ias_guardrail_luhn_ok("4111 1111 1111 1111", 19));
    assert_false(ias_guardrail_luhn_ok("4111111111111112", 16));
    assert_true(ias_guardrail_iban_ok("DE89370400440532013000", 22));
    assert_true(ias_guardrail_iban_ok("GB82 WEST 1234 5698 7654 32", 27));
    assert_false(ias_guardrail_iban_ok("DE89370400440532013001", 22));
}

static void check_redact(const char *in, unsigned mask, const char *want)
{
    char *out;
    size_t len;
    ias_guardrail_redact_pii(in, mask, &out, &len);
    if (strcmp(out, want) != 0)
        fail_msg("redact(\"%s\") = \"%s\", want \"%s\"", in, out, want);
    assert_int_equal(len, strlen(want));
    free(out);
}

static void test_pii(void **state)
{
    unsigned all = IAS_GR_PII_EMAIL | IAS_GR_PII_PHONE | IAS_GR_PII_CARD | IAS_GR_PII_IBAN |
                   IAS_GR_PII_API_KEY;
    check_redact("mail bob.smith+x@example.co.uk now.", all, "mail [REDACTED_EMAIL] now.");
    check_redact("not an email: a@b, x@localhost", all, "not an email: a@b, x@localhost");
    check_redact("card 4111 1111 1111 1111 ok", all, "card [REDACTED_CARD] ok");
    check_redact("card 4111-1111-1111-1112 bad luhn", IAS_GR_PII_CARD,
                 "card 4111-1111-1111-1112 bad luhn");
    check_redact("iban DE89 3704 0044 0532 0130 00 THANKS", all, "iban [REDACTED_IBAN] THANKS");
    check_redact("iban DE89370400440532013001", IAS_GR_PII_IBAN, "iban DE89370400440532013001");
    check_redact("call +49 30 1234567 or (030) 123-4567-89", all,
                 "call [REDACTED_PHONE] or [REDACTED_PHONE]");
    check_redact("in 2026-11-22 we had 42 items", all, "in 2026-11-22 we had 42 items");
    check_redact("key sk-abcdefghijklmnopqrstuvwx and AKIAABCDEFGHIJKLMNOP", all,
                 "key [REDACTED_API_KEY] and [REDACTED_API_KEY]");
    check_redact("mail bob@example.com", IAS_GR_PII_PHONE, "mail bob@example.com");
}

static void test_prompt(void **state)
{
    ias_guardrail *g = compile("{\"prompt\":{\"deny\":[{\"id\":\"pw\",\"regex\":\"password[ "
                               "]*[:=]\",\"case_insensitive\":true,\"message\":\"no passwords\"}],"
                               "\"redact\":[\"email\",\"card\"]}}",
                               64);
    ias_gr_prompt_result res;
    char *out;
    size_t len;

    memset(&res, 0, sizeof(res));
    assert_int_equal(ias_guardrail_prompt(g, "write to eve@corp.example please", &out, &len, &res),
                     IAS_OK);
    assert_false(res.deny);
    assert_string_equal(out, "write to [REDACTED_EMAIL] please");
    assert_int_equal(res.nredactions, 1);
    assert_int_equal(res.nv, 1);
    assert_string_equal(res.v[0].rule_id, "pii:email");
    free(out);
    memset(&res, 0, sizeof(res));
    assert_int_equal(ias_guardrail_prompt(g, "my PASSWORD: hunter2", &out, &len, &res), IAS_OK);
    assert_true(res.deny);
    assert_null(out);
    assert_string_equal(res.message, "no passwords");
    assert_string_equal(res.v[0].rule_id, "pw");
    ias_guardrail_free(g);
}

/* Feeds text split at the given cut points; returns the concatenated output. */
static char *run_split(ias_gr_stream *s, const char *text, const size_t *cuts, size_t ncuts,
                       ias_gr_status *st, size_t *max_held)
{
    size_t len = strlen(text), prev = 0, olen = 0;
    char *acc = calloc(1, 4 * len + 256);
    assert_non_null(acc);
    *st = IAS_GR_CONTINUE;
    *max_held = 0;
    for (size_t i = 0; i <= ncuts && *st == IAS_GR_CONTINUE; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        const char *out;
        size_t n;
        *st = ias_gr_stream_feed(s, text + prev, end - prev, i == ncuts, &out, &n);
        memcpy(acc + olen, out, n);
        olen += n;
        if (ias_gr_stream_held(s) > *max_held)
            *max_held = ias_gr_stream_held(s);
        prev = end;
    }
    acc[olen] = '\0';
    return acc;
}

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        if (k == 0 || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

static void test_phrase_every_split(void **state)
{
    ias_guardrail *g = compile("{\"output\":{\"holdback\":12,\"rules\":[{\"id\":\"bomb\","
                               "\"action\":\"deny\",\"phrase\":\"build a bömb\","
                               "\"case_insensitive\":true}]}}",
                               64);
    const ias_guardrail *gs[] = {g};
    const char *text = "Sure — here is how to BUILD A BöMB: first… ünïcödé";
    size_t len = strlen(text);
    const char *prefix = "Sure — here is how to ";

    /* every single cut point, and every pair of cut points */
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b};
            ias_gr_status st;
            size_t held;
            ias_gr_stream *s = ias_gr_stream_new(gs, 1, 64);
            char *out = run_split(s, text, cuts, 2, &st, &held);
            if (st != IAS_GR_STOP || strcmp(out, prefix) != 0)
                fail_msg("cuts %zu,%zu: status %d output \"%s\"", a, b, st, out);
            const ias_gr_violation *v;
            assert_int_equal(ias_gr_stream_violations(s, &v), 1);
            assert_string_equal(v[0].rule_id, "bomb");
            assert_true(v[0].deny);
            free(out);
            ias_gr_stream_free(s);
        }
    }
    ias_guardrail_free(g);
}

static void test_utf8_never_cut(void **state)
{
    /* no rules matching: the output must equal the input, and every emitted
     * piece must be valid UTF-8 whatever the cut points */
    ias_guardrail *g = compile("{\"output\":{\"holdback\":3,\"rules\":[{\"id\":\"x\","
                               "\"action\":\"deny\",\"phrase\":\"zzz\"}]}}",
                               64);
    const ias_guardrail *gs[] = {g};
    const char *text = "aé€𝄞b€é𝄞𝄞c";
    size_t len = strlen(text);

    for (size_t hb = 0; hb < 2; hb++) {
        for (size_t a = 0; a <= len; a++) {
            for (size_t b = a; b <= len; b++) {
                ias_gr_stream *s = ias_gr_stream_new(gs, hb == 0 ? 1 : 0, 64);
                size_t prev = 0, cuts[2] = {a, b}, olen = 0;
                char acc[128];
                for (size_t i = 0; i <= 2; i++) {
                    size_t end = i < 2 ? cuts[i] : len, n;
                    const char *out;
                    assert_int_equal(
                        ias_gr_stream_feed(s, text + prev, end - prev, i == 2, &out, &n),
                        IAS_GR_CONTINUE);
                    if (!utf8_valid(out, n))
                        fail_msg("cuts %zu,%zu: piece %zu is not valid UTF-8", a, b, i);
                    memcpy(acc + olen, out, n);
                    olen += n;
                    prev = end;
                }
                acc[olen] = '\0';
                assert_string_equal(acc, text);
                ias_gr_stream_free(s);
            }
        }
    }
    ias_guardrail_free(g);
}

static void test_redact_across_chunks(void **state)
{
    ias_guardrail *g =
        compile("{\"output\":{\"holdback\":16,\"rules\":["
                "{\"id\":\"code\",\"action\":\"redact\",\"phrase\":\"Project X\","
                "\"replacement\":\"[codename]\"},"
                "{\"id\":\"num\",\"action\":\"redact\",\"regex\":\"acct-[0-9]{4}\"}]}}",
                64);
    const ias_guardrail *gs[] = {g};
    const char *text = "About Project X: see acct-1234 and Project X again.";
    const char *want = "About [codename]: see [REDACTED] and [codename] again.";
    size_t len = strlen(text);

    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b++) {
            size_t cuts[2] = {a, b}, held;
            ias_gr_status st;
            ias_gr_stream *s = ias_gr_stream_new(gs, 1, 64);
            char *out = run_split(s, text, cuts, 2, &st, &held);
            if (st != IAS_GR_CONTINUE || strcmp(out, want) != 0)
                fail_msg("cuts %zu,%zu: \"%s\"", a, b, out);
            free(out);
            ias_gr_stream_free(s);
        }
    }
    ias_guardrail_free(g);
}

static void test_holdback_bounded(void **state)
{
    /* a regex that could grow forever is still released once it fills the window */
    ias_guardrail *g = compile("{\"output\":{\"holdback\":8,\"rules\":["
                               "{\"id\":\"digits\",\"action\":\"redact\",\"regex\":\"[0-9]+\"},"
                               "{\"id\":\"stop\",\"action\":\"deny\",\"phrase\":\"STOPNOW\"}]}}",
                               64);
    const ias_guardrail *gs[] = {g};
    ias_gr_stream *s = ias_gr_stream_new(gs, 1, 4); /* the caller's cap wins */
    const char *out;
    size_t n, total = 0;

    assert_int_equal(ias_gr_stream_holdback(s), 4);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(ias_gr_stream_feed(s, "1", 1, false, &out, &n), IAS_GR_CONTINUE);
        total += n;
        assert_true(ias_gr_stream_held(s) <= 4);
    }
    assert_true(total > 0);
    ias_gr_stream_free(s);

    /* plain text: at most holdback characters stay behind after each chunk */
    s = ias_gr_stream_new(gs, 1, 64);
    assert_int_equal(ias_gr_stream_holdback(s), 8);
    for (int i = 0; i < 50; i++) {
        assert_int_equal(ias_gr_stream_feed(s, "abcé", 5, false, &out, &n), IAS_GR_CONTINUE);
        assert_true(ias_gr_stream_held(s) <= 8 * 4);
        assert_true(i < 2 || n == 5); /* one chunk in, one chunk out */
    }
    assert_int_equal(ias_gr_stream_feed(s, "", 0, true, &out, &n), IAS_GR_CONTINUE);
    assert_int_equal(ias_gr_stream_held(s), 0);
    /* a stopped stream stays stopped */
    ias_gr_stream_free(s);
    s = ias_gr_stream_new(gs, 1, 64);
    assert_int_equal(ias_gr_stream_feed(s, "ok STOPNOW", 10, false, &out, &n), IAS_GR_STOP);
    assert_int_equal(n, 3);
    assert_int_equal(ias_gr_stream_feed(s, "more", 4, true, &out, &n), IAS_GR_STOP);
    assert_int_equal(n, 0);
    ias_gr_stream_free(s);
    ias_guardrail_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_luhn_iban),
        cmocka_unit_test(test_pii),
        cmocka_unit_test(test_prompt),
        cmocka_unit_test(test_phrase_every_split),
        cmocka_unit_test(test_utf8_never_cut),
        cmocka_unit_test(test_redact_across_chunks),
        cmocka_unit_test(test_holdback_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
