/* Deterministic text: the reply is a function of (model, prompt text, seed)
 * only, so streaming and non-streaming answers to one prompt are identical and
 * tests can assert exact content and usage. */
#include "mockllm.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- buffer ---- */

static void reserve(mock_buf *b, size_t extra)
{
    size_t cap;

    if (b->len + extra + 1 <= b->cap)
        return;
    cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1)
        cap *= 2;
    b->data = ias_xrealloc(b->data, cap);
    b->cap = cap;
}

void mock_buf_add(mock_buf *b, const void *data, size_t len)
{
    reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

void mock_buf_adds(mock_buf *b, const char *s)
{
    mock_buf_add(b, s, strlen(s));
}

void mock_buf_addf(mock_buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        ias_die("mockllm: bad format %s", fmt);
    reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mock_buf_add_json_str(mock_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";

    reserve(b, len + 2);
    b->data[b->len++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            mock_buf_add(b, esc, 2);
        } else if (c < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            mock_buf_add(b, esc, 6);
        } else {
            mock_buf_add(b, &s[i], 1);
        }
    }
    mock_buf_add(b, "\"", 1);
}

void mock_buf_free(mock_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- hashing ---- */

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;

    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= FNV_PRIME;
    }
    return h;
}

static uint64_t hash_seed(uint64_t h, uint64_t seed)
{
    unsigned char b[8];

    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(seed >> (8 * i));
    return fnv1a(h, b, sizeof(b));
}

long long mock_count_words(const char *s, size_t len)
{
    long long n = 0;
    bool in_word = false;

    for (size_t i = 0; i < len; i++) {
        bool space = isspace((unsigned char)s[i]) != 0;

        if (!space && !in_word)
            n++;
        in_word = !space;
    }
    return n;
}

/* ---- prompts ---- */

typedef struct walk {
    uint64_t hash;
    long long words;
    mock_buf *echo; /* collects the current message's text when non-NULL */
} walk;

static void walk_text(const char *text, size_t len, void *arg)
{
    walk *w = arg;

    w->hash = fnv1a(w->hash, text, len);
    w->hash = fnv1a(w->hash, "\n", 1);
    w->words += mock_count_words(text, len);
    if (w->echo != NULL) {
        if (w->echo->len > 0)
            mock_buf_add(w->echo, " ", 1);
        mock_buf_add(w->echo, text, len);
    }
}

static void set_echo(mock_prompt *out, mock_buf *text)
{
    out->echo = text->data != NULL ? text->data : ias_xstrdup("");
    out->echo_words = mock_count_words(out->echo, strlen(out->echo));
}

void mock_prompt_chat(const ias_openai_request *req, const char *model, uint64_t seed, bool echo,
                      mock_prompt *out)
{
    walk w = {.hash = fnv1a(FNV_OFFSET, model, strlen(model) + 1)};
    mock_buf last_user = {0};
    const cJSON *msg;

    memset(out, 0, sizeof(*out));
    cJSON_ArrayForEach(msg, req->messages)
    {
        ias_openai_role role = ias_openai_message_role(msg);
        const char *name = ias_openai_role_name(role);
        mock_buf text = {0};

        w.hash = fnv1a(w.hash, name, strlen(name) + 1);
        w.echo = echo && role == IAS_OPENAI_ROLE_USER ? &text : NULL;
        ias_openai_content_foreach_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), walk_text,
                                        &w);
        if (w.echo != NULL) {
            /* Keep the last user message only. */
            mock_buf_free(&last_user);
            last_user = text;
            if (last_user.data == NULL)
                mock_buf_add(&last_user, "", 0);
        }
    }
    out->hash = hash_seed(w.hash, seed);
    out->prompt_tokens = w.words + 3 * (long long)req->nmessages + 3;
    if (echo)
        set_echo(out, &last_user);
    else
        mock_buf_free(&last_user);
}

void mock_prompt_completion(const char *prompt, const char *model, uint64_t seed, bool echo,
                            mock_prompt *out)
{
    size_t len = strlen(prompt);
    uint64_t h = fnv1a(FNV_OFFSET, model, strlen(model) + 1);

    memset(out, 0, sizeof(*out));
    h = fnv1a(h, prompt, len);
    out->hash = hash_seed(h, seed);
    out->prompt_tokens = mock_count_words(prompt, len) + 1;
    if (echo) {
        mock_buf text = {0};

        mock_buf_add(&text, prompt, len);
        set_echo(out, &text);
    }
}

void mock_prompt_token_ids(const cJSON *ids, const char *model, uint64_t seed, bool echo,
                           mock_prompt *out)
{
    uint64_t h = fnv1a(FNV_OFFSET, model, strlen(model) + 1);
    mock_buf text = {0};
    const cJSON *id;
    char num[24];
    int len;

    memset(out, 0, sizeof(*out));
    /* a marker, so ids and a text prompt of the same digits differ */
    h = fnv1a(h, "ids", 4);
    cJSON_ArrayForEach(id, ids)
    {
        len = snprintf(num, sizeof(num), "%lld", (long long)id->valuedouble);
        if (len < 0 || (size_t)len >= sizeof(num))
            ias_die("mockllm: token id does not format");
        h = fnv1a(h, num, (size_t)len + 1);
        if (echo) {
            if (text.len > 0)
                mock_buf_add(&text, " ", 1);
            mock_buf_add(&text, num, (size_t)len);
        }
        out->prompt_tokens++;
    }
    out->hash = hash_seed(h, seed);
    if (echo)
        set_echo(out, &text);
}

void mock_prompt_free(mock_prompt *p)
{
    free(p->echo);
    p->echo = NULL;
}

/* ---- words ---- */

static const char *const vocab[] = {
    "the",     "a",       "model",   "answers", "quietly", "with",    "tokens",   "from",
    "an",      "ocean",   "of",      "words",   "river",   "stone",   "light",    "slowly",
    "bright",  "north",   "garden",  "signal",  "packet",  "cloud",   "engine",   "budget",
    "policy",  "ledger",  "stream",  "window",  "silver",  "orange",  "forest",   "paper",
    "and",     "then",    "under",   "over",    "every",   "small",   "large",    "quiet",
    "mock",    "gateway", "request", "reply",   "metric",  "counter", "gauge",    "trace",
    "is",      "was",     "will",    "can",     "should",  "might",   "always",   "never",
    "morning", "evening", "winter",  "summer",  "harbor",  "valley",  "mountain", "meadow",
};

void mock_textgen_init(mock_textgen *g, const mock_prompt *p, uint64_t sample)
{
    uint64_t h = p->hash;

    if (sample > 0)
        h = hash_seed(fnv1a(h, "n", 1), sample);
    g->state = h != 0 ? h : 0x9e3779b97f4a7c15ULL;
    g->echo = p->echo;
    g->echoing = p->echo != NULL;
}

bool mock_textgen_next(mock_textgen *g, const char **word, size_t *len)
{
    const char *s;

    if (g->echoing) {
        s = g->echo;
        while (isspace((unsigned char)*s))
            s++;
        if (*s == '\0')
            return false;
        *word = s;
        while (*s != '\0' && !isspace((unsigned char)*s))
            s++;
        *len = (size_t)(s - *word);
        g->echo = s;
        return true;
    }
    /* xorshift64* */
    g->state ^= g->state >> 12;
    g->state ^= g->state << 25;
    g->state ^= g->state >> 27;
    *word = vocab[((g->state * 0x2545F4914F6CDD1DULL) >> 32) % IAS_ARRAY_LEN(vocab)];
    *len = strlen(*word);
    return true;
}
