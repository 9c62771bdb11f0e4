/* Backend choice: weighted power of two choices on outstanding requests, among
 * backends that pass the active health check and whose circuit breaker is not
 * open. A breaker opens after breaker_failures consecutive failures, stays open
 * for breaker_cooldown_ms, then lets exactly one probe through (half-open): its
 * success closes the breaker, its failure opens it again. */
#include "router.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x9e3779b97f4a7c15ULL; /* xorshift64* */

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1dULL;
}

static bool usable(const router_backend *b, uint64_t now_ms)
{
    long long open_until = atomic_load_explicit(&b->st->open_until_ms, memory_order_relaxed);

    if (b->weight <= 0 || !atomic_load_explicit(&b->st->healthy, memory_order_relaxed))
        return false;
    if (open_until == 0)
        return true;
    /* cool-down over: usable for the one probe nobody claimed yet */
    return (long long)now_ms >= open_until &&
           !atomic_load_explicit(&b->st->probing, memory_order_relaxed);
}

bool router_balance_any_available(const router_model *m, uint64_t now_ms)
{
    for (size_t i = 0; i < m->nbackends; i++)
        if (usable(&m->backends[i], now_ms))
            return true;
    return false;
}

/* One weighted draw among the candidates (indices in cand[0..n)). */
static int draw(const router_model *m, const int *cand, int n, long long total, uint64_t *rng)
{
    long long x = (long long)(rng_next(rng) % (uint64_t)total);

    for (int i = 0; i < n; i++) {
        x -= m->backends[cand[i]].weight;
        if (x < 0)
            return cand[i];
    }
    return cand[n - 1];
}

/* Lower load first: outstanding/weight compared without division. */
static bool lighter(const router_backend *a, const router_backend *b)
{
    long long la = atomic_load_explicit(&a->st->outstanding, memory_order_relaxed);
    long long lb = atomic_load_explicit(&b->st->outstanding, memory_order_relaxed);

    return la * b->weight < lb * a->weight;
}

int router_balance_pick(router_ctx *ctx, const router_model *m, uint64_t tried, uint64_t *rng)
{
    uint64_t now = ias_now_ms();
    int cand[64];
    int n = 0;
    long long total = 0;

    IAS_UNUSED(ctx);
    for (size_t i = 0; i < m->nbackends && i < 64; i++) {
        if ((tried >> i) & 1u || !usable(&m->backends[i], now))
            continue;
        cand[n++] = (int)i;
        total += m->backends[i].weight;
    }
    while (n > 0) {
        int a = draw(m, cand, n, total, rng);
        int b = n > 1 ? draw(m, cand, n, total, rng) : a;
        int pick = (b != a && lighter(&m->backends[b], &m->backends[a])) ? b : a;
        router_backend_state *st = m->backends[pick].st;
        bool f = false;

        if (atomic_load(&st->open_until_ms) == 0 ||
            atomic_compare_exchange_strong(&st->probing, &f, true))
            return pick;
        /* another request took the half-open probe: drop it and draw again */
        for (int i = 0; i < n; i++) {
            if (cand[i] == pick) {
                total -= m->backends[pick].weight;
                cand[i] = cand[--n];
                break;
            }
        }
    }
    return -1;
}

void router_balance_success(router_backend_state *st)
{
    atomic_store(&st->fails, 0);
    atomic_store(&st->open_until_ms, 0);
    atomic_store(&st->probing, false);
}

void router_balance_failure(router_ctx *ctx, router_backend_state *st)
{
    int fails = atomic_fetch_add(&st->fails, 1) + 1;
    bool probe = atomic_exchange(&st->probing, false);

    if (probe || fails >= ctx->cfg.breaker_failures) {
        atomic_store(&st->open_until_ms,
                     (long long)(ias_now_ms() + (uint64_t)ctx->cfg.breaker_cooldown_ms));
        ias_warn(NULL, "backend %s: circuit open for %lld ms after %d failures", st->key,
                 ctx->cfg.breaker_cooldown_ms, fails);
    }
}
