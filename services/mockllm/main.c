/* ias-mockllm: OpenAI-compatible mock model server standing in for vLLM.
 * Config table, context, route table; the server library does the rest
 * (listening, workers, /health, /ready, /metrics, drain). */
#include "mockllm.h"

#include "ias/config.h"
#include "ias/http_server.h"
#include "ias/log.h"
#include "ias/metrics.h"
#include "ias/service.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ias_cfg_row config_rows[] = {
    IAS_SERVICE_CFG_ROWS("8090"),
    {"IAS_MOCK_MODEL", IAS_CFG_STR, "mock-gpt", 0, 0, "the one model name served"},
    {"IAS_MOCK_CONTEXT", IAS_CFG_INT, "8192", 16, 10000000,
     "max_model_len: prompt + completion tokens"},
    {"IAS_MOCK_MAX_TOKENS_DEFAULT", IAS_CFG_INT, "16", 1, IAS_OPENAI_MAX_TOKENS_LIMIT,
     "completion tokens when the request gives no max_tokens"},
    {"IAS_MOCK_TTFT_MS", IAS_CFG_MS, "0", 0, MOCK_MAX_TTFT_MS,
     "delay before the first token (non-streaming: before the answer)"},
    {"IAS_MOCK_TOKENS_PER_S", IAS_CFG_INT, "0", 0, MOCK_MAX_TOKENS_PER_S,
     "token rate after the first (0: as fast as the client reads)"},
    {"IAS_MOCK_ERROR_RATE", IAS_CFG_STR, "0", 0, 0, "probability in [0, 1] of an injected 500"},
    {"IAS_MOCK_FAULT", IAS_CFG_STR, "none", 0, 0,
     "process-wide fault: none, hang, cut-after=<n>, status=<code>"},
};

static const ias_route routes[] = {
    {"GET", "/v1/models", mock_handle_models},
    {"POST", "/v1/chat/completions", mock_handle_chat},
    {"POST", "/v1/completions", mock_handle_completions},
    {"POST", "/v1/embeddings", mock_handle_embeddings},
};

/* Checks what the config table cannot express; prints every problem. */
static int load_ctx(const ias_config *cfg, mock_ctx *ctx)
{
    const char *model = ias_config_str(cfg, "IAS_MOCK_MODEL");
    char why[128];
    int rc = IAS_OK;

    memset(ctx, 0, sizeof(*ctx));
    if (model[0] == '\0' || ias_strlcpy(ctx->model, model, sizeof(ctx->model)) != IAS_OK) {
        fprintf(stderr, "  IAS_MOCK_MODEL: want 1..%d bytes\n", IAS_OPENAI_MAX_MODEL_LEN);
        rc = IAS_ERR;
    }
    if (mock_rate_parse(ias_config_str(cfg, "IAS_MOCK_ERROR_RATE"), &ctx->defaults.error_rate) !=
        IAS_OK) {
        fprintf(stderr, "  IAS_MOCK_ERROR_RATE: want a number in [0, 1]\n");
        rc = IAS_ERR;
    }
    if (mock_fault_parse(ias_config_str(cfg, "IAS_MOCK_FAULT"), &ctx->defaults.fault, why,
                         sizeof(why)) != IAS_OK) {
        fprintf(stderr, "  IAS_MOCK_FAULT: %s\n", why);
        rc = IAS_ERR;
    }
    ctx->context_len = ias_config_int(cfg, "IAS_MOCK_CONTEXT");
    ctx->max_tokens_default = ias_config_int(cfg, "IAS_MOCK_MAX_TOKENS_DEFAULT");
    ctx->defaults.ttft_ms = ias_config_ms(cfg, "IAS_MOCK_TTFT_MS");
    ctx->defaults.tokens_per_s = ias_config_int(cfg, "IAS_MOCK_TOKENS_PER_S");
    ctx->defaults.natural_tokens = -1;
    return rc;
}

int main(void)
{
    ias_config *cfg =
        ias_config_load_or_exit("ias-mockllm", config_rows, IAS_ARRAY_LEN(config_rows));
    ias_server_opts opts = {0};
    ias_server *srv;
    mock_ctx ctx;
    int rc;

    if (load_ctx(cfg, &ctx) != IAS_OK || ias_service_init(cfg, "mockllm", &opts) != IAS_OK) {
        fprintf(stderr, "ias-mockllm: invalid configuration (above)\n");
        ias_config_free(cfg);
        return 2;
    }
    ctx.tokens_generated = ias_metrics_counter("mockllm_tokens_generated_total",
                                               "Completion tokens produced (EOS included)", NULL);
    ctx.streams_active =
        ias_metrics_gauge("mockllm_streams_active", "Streaming replies in progress", NULL);

    opts.openai_errors = true;
    opts.routes = routes;
    opts.nroutes = IAS_ARRAY_LEN(routes);
    opts.ctx = &ctx;

    srv = ias_server_new(&opts);
    if (srv == NULL) {
        ias_error(NULL, "cannot create the server");
        ias_config_free(cfg);
        return 1;
    }
    ias_info(NULL, "serving model %s on %s:%d", ctx.model, opts.bind_addr, opts.port);
    rc = ias_server_run(srv);
    ias_server_free(srv);
    ias_config_free(cfg);
    return rc == IAS_OK ? 0 : 1;
}
