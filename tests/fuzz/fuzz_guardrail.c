/* Fuzzes the guardrail engine: the stream matcher fed in pieces whose sizes
 * come from the input, and the prompt side (deny + PII redaction) on the same
 * text. Checks: no crash, the hold-back stays bounded, a deny phrase never
 * reaches the output, valid UTF-8 in gives valid UTF-8 out.
 *
 * Input layout: byte 0 = number of split sizes (low 3 bits), then the split
 * sizes (one byte each, 0 read as 1), then the text. */
#include "ias/guardrail.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char profile_json[] =
    "{\"prompt\":{\"deny\":[{\"id\":\"pw\",\"regex\":\"password[ ]*[:=]\"}],"
    "\"redact\":[\"email\",\"phone\",\"card\",\"iban\",\"api_key\"]},"
    "\"output\":{\"holdback\":16,\"rules\":["
    "{\"id\":\"bomb\",\"action\":\"deny\",\"phrase\":\"bomb\",\"case_insensitive\":true},"
    "{\"id\":\"acct\",\"action\":\"redact\",\"regex\":\"acct-[0-9]+\"},"
    "{\"id\":\"uni\",\"action\":\"redact\",\"phrase\":\"\xc3\xa9t\xc3\xa9\"}]}}";

static bool utf8_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80             ? 1
                   : (c & 0xf8) == 0xf0 ? 4
                   : (c & 0xf0) == 0xe0 ? 3
                   : (c & 0xe0) == 0xc0 ? 2
                                        : 0;
        if (k == 0 || i + k > n)
            return false;
        for (size_t j = 1; j < k; j++)
            if (((unsigned char)s[i + j] & 0xc0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

static bool has_bomb(const char *s, size_t n)
{
    for (size_t i = 0; i + 4 <= n; i++)
        if (strncasecmp(s + i, "bomb", 4) == 0)
            return true;
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ias_guardrail *g;
    size_t nsplits, pos, tlen, olen = 0, prev = 0;
    const char *text;
    char *acc, *tmp;
    ias_gr_stream *s;
    ias_gr_status st = IAS_GR_CONTINUE;
    ias_gr_prompt_result res;

    if (g == NULL) {
        cJSON *doc = cJSON_Parse(profile_json);
        char err[128];
        if (doc == NULL || ias_guardrail_compile(doc, "fuzz", 64, &g, err, sizeof(err)) != IAS_OK)
            abort();
        cJSON_Delete(doc);
    }
    if (size < 1)
        return 0;
    nsplits = data[0] & 7;
    if (size < 1 + nsplits)
        return 0;
    pos = 1 + nsplits;
    text = (const char *)data + pos;
    tlen = size - pos;
    acc = malloc(2 * tlen + 64 * 16 + 1);
    if (acc == NULL)
        abort();

    const ias_guardrail *gs[] = {g};
    s = ias_gr_stream_new(gs, 1, 64);
    for (size_t i = 0; i <= nsplits && st == IAS_GR_CONTINUE; i++) {
        size_t want = i < nsplits ? (data[1 + i] ? data[1 + i] : 1) : tlen - prev;
        size_t n = want < tlen - prev ? want : tlen - prev, outlen;
        const char *out;
        st = ias_gr_stream_feed(s, text + prev, n, i == nsplits, &out, &outlen);
        memcpy(acc + olen, out, outlen);
        olen += outlen;
        prev += n;
        if (st == IAS_GR_CONTINUE && i < nsplits && ias_gr_stream_held(s) > 16 * 4 + 3 + 4 * 16)
            abort(); /* window (chars) + incomplete sequence + a deferred match */
    }
    if (has_bomb(acc, olen))
        abort();
    if (utf8_valid(text, tlen) && !utf8_valid(acc, olen))
        abort();
    ias_gr_stream_free(s);
    free(acc);

    /* prompt side on a NUL-terminated copy */
    tmp = malloc(tlen + 1);
    if (tmp == NULL)
        abort();
    memcpy(tmp, text, tlen);
    tmp[tlen] = '\0';
    memset(&res, 0, sizeof(res));
    if (ias_guardrail_prompt(g, tmp, &acc, &olen, &res) != IAS_OK)
        abort();
    if (!res.deny && (acc == NULL || strlen(acc) != olen))
        abort();
    free(acc);
    free(tmp);
    return 0;
}
