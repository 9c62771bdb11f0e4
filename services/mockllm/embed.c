/* POST /v1/embeddings, shaped like vLLM's pooling server
 * (vllm/entrypoints/openai/serving_embedding.py, protocol.py EmbeddingResponse):
 *
 *   {"id":"embd-...","object":"list","created":...,"model":...,
 *    "data":[{"index":i,"object":"embedding","embedding":[...] or "<base64>"}],
 *    "usage":{"prompt_tokens":N,"total_tokens":N}}
 *
 * Vectors are deterministic: input i gets a unit vector seeded from its text
 * (or token ids), the model and X-Mock-Seed, so the same input always embeds
 * the same and tests can compare float and base64 answers. Usage counts the
 * inputs as completions do (words + 1 per text input, one per token id);
 * usage carries no completion_tokens, as OpenAI's. base64 is the vector's
 * little-endian float32 bytes, as OpenAI and vLLM send it.
 *
 * Fault knobs: status=, the error rate and hang as the other endpoints; a TTFT
 * delays the whole answer; cut-after drops the connection before the answer
 * (there is nothing to deliver part of). */
#include "mockllm.h"

#include "ias/crypto.h"
#include "ias/log.h"

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <math.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An answer that waits (TTFT) or never comes (hang): freed by its timer or
 * when the client leaves, whichever is first. */
typedef struct mock_embed {
    ias_req *r;
    struct event *timer;
    mock_buf body;
    bool cut; /* cut the connection instead of answering */
} mock_embed;

static void embed_free(mock_embed *e)
{
    if (e->timer != NULL)
        event_free(e->timer);
    mock_buf_free(&e->body);
    free(e);
}

static void on_close(ias_req *r, void *arg)
{
    embed_free(arg);
}

static void send_answer(ias_req *r, const mock_buf *body, bool cut)
{
    if (cut) {
        if (ias_req_cut(r) != IAS_OK)
            ias_warn(ias_req_log(r), "mock fault cut-after: cannot shut the connection down");
        (void)ias_reply(r, 500, "text/plain", "", 0);
        return;
    }
    (void)ias_reply(r, 200, "application/json", body->data, body->len);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    mock_embed *e = arg;

    ias_req_on_close(e->r, NULL, NULL);
    send_answer(e->r, &e->body, e->cut);
    embed_free(e);
}

/* splitmix64: a good spread from consecutive states. */
static uint64_t splitmix(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* dims components in [-1, 1), scaled to unit length (a zero vector, which 53
 * random bits never make, would stay as it is). */
static void unit_vector(uint64_t seed, float *v, size_t dims)
{
    uint64_t state = seed;
    double norm = 0;

    for (size_t i = 0; i < dims; i++) {
        double x = (double)(splitmix(&state) >> 11) * 0x1.0p-52 - 1.0;

        v[i] = (float)x;
        norm += (double)v[i] * (double)v[i];
    }
    norm = sqrt(norm);
    for (size_t i = 0; norm > 0 && i < dims; i++)
        v[i] = (float)((double)v[i] / norm);
}

/* The vector as a JSON array (each float32 printed exactly, as vLLM's Python
 * floats are) or as a base64 string of its little-endian float32 bytes. */
static void add_vector(mock_buf *b, const float *v, size_t dims, bool base64, unsigned char *raw,
                       char *b64)
{
    if (!base64) {
        mock_buf_add(b, "[", 1);
        for (size_t i = 0; i < dims; i++)
            mock_buf_addf(b, i == 0 ? "%.17g" : ",%.17g", (double)v[i]);
        mock_buf_add(b, "]", 1);
        return;
    }
    for (size_t i = 0; i < dims; i++) {
        uint32_t u;

        memcpy(&u, &v[i], sizeof(u));
        for (int k = 0; k < 4; k++)
            raw[4 * i + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    int n = EVP_EncodeBlock((unsigned char *)b64, raw, (int)(4 * dims));
    if (n < 0)
        ias_die("mockllm: base64 encoding failed");
    mock_buf_add(b, "\"", 1);
    mock_buf_add(b, b64, (size_t)n);
    mock_buf_add(b, "\"", 1);
}

/* Builds the whole answer into out; IAS_ERR after answering 400 (an input
 * longer than the context, vLLM's check). */
static int build(ias_req *r, mock_ctx *ctx, const ias_openai_request *req,
                 const mock_params *params, const uint8_t rnd[16], mock_buf *out)
{
    size_t dims = req->dimensions > 0 ? (size_t)req->dimensions : MOCK_EMBED_DIMS;
    float *v = ias_xcalloc(dims, sizeof(*v));
    unsigned char *raw = ias_xmalloc(4 * dims);
    char *b64 = ias_xmalloc(4 * ((4 * dims + 2) / 3) + 1);
    long long prompt_tokens = 0;
    char hex[33];
    int rc = IAS_OK;

    if (ias_hex_encode(rnd, 16, hex, sizeof(hex)) < 0)
        ias_die("mockllm: hex encoding failed");
    mock_buf_addf(out, "{\"id\":\"embd-%s\",\"object\":\"list\",\"created\":%lld,\"model\":", hex,
                  (long long)(ias_wall_ms() / 1000));
    mock_buf_add_json_str(out, ctx->model, strlen(ctx->model));
    mock_buf_adds(out, ",\"data\":[");
    for (size_t i = 0; i < req->nprompts; i++) {
        const cJSON *p = ias_openai_prompt_at(req, i);
        mock_prompt mp;

        if (cJSON_IsString(p))
            mock_prompt_completion(p->valuestring, ctx->model, params->seed, false, &mp);
        else
            mock_prompt_token_ids(p, ctx->model, params->seed, false, &mp);
        mock_prompt_free(&mp);
        if (mp.prompt_tokens > ctx->context_len) {
            mock_reply_error(r, 400, "BadRequestError", "input",
                             "This model's maximum context length is %lld tokens. However, you "
                             "requested %lld tokens in the input for embedding generation. "
                             "Please reduce the length of the input.",
                             ctx->context_len, mp.prompt_tokens);
            rc = IAS_ERR;
            break;
        }
        prompt_tokens += mp.prompt_tokens;
        unit_vector(mp.hash, v, dims);
        mock_buf_addf(
            out, "%s{\"index\":%zu,\"object\":\"embedding\",\"embedding\":", i == 0 ? "" : ",", i);
        add_vector(out, v, dims, req->encoding_base64, raw, b64);
        mock_buf_add(out, "}", 1);
    }
    if (rc == IAS_OK)
        mock_buf_addf(out, "],\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                      prompt_tokens, prompt_tokens);
    free(v);
    free(raw);
    free(b64);
    return rc;
}

void mock_handle_embeddings(ias_req *r, void *arg)
{
    mock_ctx *ctx = arg;
    ias_openai_request req;
    mock_params params;
    mock_embed *e;
    mock_buf body = {0};
    uint8_t rnd[24];
    cJSON *json;

    if (mock_faults_begin(&ctx->defaults, r, &params, rnd) != IAS_OK)
        return; /* answered: bad X-Mock-* header, status fault or injected error */
    if (params.fault.kind == MOCK_FAULT_HANG) {
        e = ias_xcalloc(1, sizeof(*e));
        e->r = r;
        ias_req_on_close(r, on_close, e); /* freed when the client leaves */
        return;
    }

    if (mock_parse_request(ctx, r, IAS_OPENAI_EMBEDDING, &req, &json) != IAS_OK)
        return; /* answered */
    if (req.dimensions > MOCK_EMBED_MAX_DIMS) {
        mock_reply_error(r, 400, "BadRequestError", "dimensions",
                         "dimensions is too large: %d. This mock makes at most %d.", req.dimensions,
                         MOCK_EMBED_MAX_DIMS);
        return;
    }
    if (build(r, ctx, &req, &params, rnd, &body) != IAS_OK) {
        mock_buf_free(&body);
        return; /* answered */
    }
    if (params.ttft_ms <= 0) {
        send_answer(r, &body, params.fault.kind == MOCK_FAULT_CUT_AFTER);
        mock_buf_free(&body);
        return;
    }
    e = ias_xcalloc(1, sizeof(*e));
    e->r = r;
    e->body = body;
    e->cut = params.fault.kind == MOCK_FAULT_CUT_AFTER;
    e->timer = evtimer_new(ias_req_base(r), on_timer, e);
    if (e->timer == NULL)
        ias_die("mockllm: evtimer_new failed");
    struct timeval tv = {.tv_sec = (time_t)(params.ttft_ms / 1000),
                         .tv_usec = (suseconds_t)(params.ttft_ms % 1000) * 1000};
    if (evtimer_add(e->timer, &tv) != 0)
        ias_die("mockllm: evtimer_add failed");
    ias_req_on_close(r, on_close, e);
}
