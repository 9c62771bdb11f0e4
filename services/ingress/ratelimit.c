/* Requests per second per org and per key: fixed one-second windows in Redis
 * (ias:rl:{scope}:{id}:{epoch_s}, TTL 2 s), both counted in one script. */
#include "ingress.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* KEYS: org bucket, key bucket. ARGV: org limit, key limit (0 = none).
 * Returns 0 when allowed, 1 when a limit is exceeded. */
static const char RL_LUA[] = "local over = 0\n"
                             "for i = 1, 2 do\n"
                             "  local lim = tonumber(ARGV[i])\n"
                             "  if lim > 0 then\n"
                             "    local n = redis.call('INCR', KEYS[i])\n"
                             "    if n == 1 then redis.call('EXPIRE', KEYS[i], 2) end\n"
                             "    if n > lim then over = 1 end\n"
                             "  end\n"
                             "end\n"
                             "return over\n";

/* Read-only after the one-time init. */
static ias_redis_script rl_script;
static pthread_once_t rl_once = PTHREAD_ONCE_INIT;

static void rl_init(void)
{
    ias_redis_script_init(&rl_script, RL_LUA);
}

typedef struct rl_call {
    ingress_rl_cb cb;
    void *arg;
} rl_call;

static void on_rl(const redisReply *rep, const char *err, void *arg)
{
    rl_call *c = arg;
    if (err || !rep || rep->type != REDIS_REPLY_INTEGER)
        c->cb(IAS_ERR, 0, c->arg);
    else
        c->cb(rep->integer ? IAS_AGAIN : IAS_OK, 1, c->arg);
    free(c);
}

void ingress_ratelimit_check(ingress_worker *w, const ingress_key *k, ingress_rl_cb cb, void *arg)
{
    int64_t org = k->org_rps >= 0 ? k->org_rps : w->ctx->org_rps_default;
    int64_t key = k->key_rps >= 0 ? k->key_rps : w->ctx->key_rps_default;
    long long sec = (long long)(ias_wall_ms() / 1000);
    char ko[128], kk[128], lo[24], lk[24];
    const char *keys[] = {ko, kk};
    const char *args[] = {lo, lk};
    rl_call *c;

    if (org <= 0 && key <= 0) {
        cb(IAS_OK, 0, arg);
        return;
    }
    pthread_once(&rl_once, rl_init);
    snprintf(ko, sizeof(ko), "ias:rl:org:%s:%lld", k->org_id, sec);
    snprintf(kk, sizeof(kk), "ias:rl:key:%s:%lld", k->key_id, sec);
    snprintf(lo, sizeof(lo), "%lld", (long long)(org > 0 ? org : 0));
    snprintf(lk, sizeof(lk), "%lld", (long long)(key > 0 ? key : 0));
    c = ias_xmalloc(sizeof(*c));
    c->cb = cb;
    c->arg = arg;
    ias_redis_async_eval(w->redis, &rl_script, 2, keys, 2, args, on_rl, c);
}
