/* Timing and fault parameters: IAS_MOCK_* defaults, X-Mock-* per request. */
#include "mockllm.h"

#include "ias/config.h"
#include "ias/crypto.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copies s without surrounding blanks into buf; IAS_ERR if it does not fit. */
static int trim(const char *s, char *buf, size_t len)
{
    const char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        end--;
    if ((size_t)(end - s) >= len)
        return IAS_ERR;
    memcpy(buf, s, (size_t)(end - s));
    buf[end - s] = '\0';
    return IAS_OK;
}

static int parse_bounded(const char *s, long long lo, long long hi, long long *out)
{
    long long v;

    if (ias_parse_ll(s, &v) != IAS_OK || v < lo || v > hi)
        return IAS_ERR;
    *out = v;
    return IAS_OK;
}

int mock_fault_parse(const char *s, mock_fault *out, char *err, size_t errlen)
{
    char buf[64];
    long long v;

    if (s == NULL || trim(s, buf, sizeof(buf)) != IAS_OK)
        goto fail;
    out->kind = MOCK_FAULT_NONE;
    out->arg = 0;
    if (buf[0] == '\0' || strcmp(buf, "none") == 0)
        return IAS_OK;
    if (strcmp(buf, "hang") == 0) {
        out->kind = MOCK_FAULT_HANG;
        return IAS_OK;
    }
    if (strncmp(buf, "cut-after=", 10) == 0 &&
        parse_bounded(buf + 10, 0, 100000000, &v) == IAS_OK) {
        out->kind = MOCK_FAULT_CUT_AFTER;
        out->arg = (long)v;
        return IAS_OK;
    }
    if (strncmp(buf, "status=", 7) == 0 && parse_bounded(buf + 7, 400, 599, &v) == IAS_OK) {
        out->kind = MOCK_FAULT_STATUS;
        out->arg = (long)v;
        return IAS_OK;
    }
fail:
    snprintf(err, errlen, "want none, hang, cut-after=<tokens> or status=<400..599>");
    return IAS_ERR;
}

int mock_rate_parse(const char *s, double *out)
{
    char *end;
    double v;

    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return IAS_ERR;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < 0.0 || v > 1.0)
        return IAS_ERR;
    *out = v;
    return IAS_OK;
}

int mock_params_for_request(const mock_params *defaults, ias_req *r, mock_params *out, char *err,
                            size_t errlen)
{
    const char *v;
    long long n;
    char why[96];

    *out = *defaults;
    if ((v = ias_req_header(r, "X-Mock-TTFT-Ms")) != NULL) {
        if (parse_bounded(v, 0, MOCK_MAX_TTFT_MS, &out->ttft_ms) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-TTFT-Ms header: want 0..%d milliseconds.",
                     MOCK_MAX_TTFT_MS);
            return IAS_ERR;
        }
    }
    if ((v = ias_req_header(r, "X-Mock-Tokens-Per-S")) != NULL) {
        if (parse_bounded(v, 0, MOCK_MAX_TOKENS_PER_S, &out->tokens_per_s) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Tokens-Per-S header: want 0..%d.",
                     MOCK_MAX_TOKENS_PER_S);
            return IAS_ERR;
        }
    }
    if ((v = ias_req_header(r, "X-Mock-Error-Rate")) != NULL) {
        if (mock_rate_parse(v, &out->error_rate) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Error-Rate header: want a number in [0, 1].");
            return IAS_ERR;
        }
    }
    if ((v = ias_req_header(r, "X-Mock-Fault")) != NULL) {
        if (mock_fault_parse(v, &out->fault, why, sizeof(why)) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Fault header: %s.", why);
            return IAS_ERR;
        }
    }
    if ((v = ias_req_header(r, "X-Mock-Tokens")) != NULL) {
        if (parse_bounded(v, 0, IAS_OPENAI_MAX_TOKENS_LIMIT, &out->natural_tokens) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Tokens header: want 0..%d.",
                     IAS_OPENAI_MAX_TOKENS_LIMIT);
            return IAS_ERR;
        }
    }
    if ((v = ias_req_header(r, "X-Mock-Seed")) != NULL) {
        if (parse_bounded(v, 0, INT64_MAX, &n) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Seed header: want a non-negative integer.");
            return IAS_ERR;
        }
        out->seed = (uint64_t)n;
    }
    if ((v = ias_req_header(r, "X-Mock-Echo")) != NULL) {
        if (ias_parse_bool(v, &out->echo) != IAS_OK) {
            snprintf(err, errlen, "Invalid X-Mock-Echo header: want 1 or 0.");
            return IAS_ERR;
        }
    }
    return IAS_OK;
}

static uint64_t load64(const uint8_t *b)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return v;
}

int mock_faults_begin(const mock_params *defaults, ias_req *r, mock_params *params, uint8_t rnd[24])
{
    char err[256];

    if (mock_params_for_request(defaults, r, params, err, sizeof(err)) != IAS_OK) {
        mock_reply_error(r, 400, "BadRequestError", NULL, "%s", err);
        return IAS_ERR;
    }
    /* Faults come first: a failing backend does not look at the body. */
    if (params->fault.kind == MOCK_FAULT_STATUS) {
        mock_reply_error(r, (int)params->fault.arg, mock_error_type((int)params->fault.arg), NULL,
                         "mock fault: status %ld", params->fault.arg);
        return IAS_ERR;
    }
    if (ias_random_bytes(rnd, 24) != IAS_OK)
        ias_die("mockllm: no randomness");
    if (params->error_rate > 0 &&
        (double)(load64(rnd + 16) >> 11) * 0x1.0p-53 < params->error_rate) {
        mock_reply_error(r, 500, "InternalServerError", NULL, "mock fault: injected error");
        return IAS_ERR;
    }
    return IAS_OK;
}
