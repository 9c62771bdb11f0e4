/* Guardrail profiles: prompt-side checks (deny on pattern, PII redaction) and
 * an output-side stream matcher with a bounded hold-back window. Shared by pdp
 * (validation at write time) and the router (enforcement). Format:
 * docs/architecture/pdp.md.
 *
 * A compiled profile is immutable and may be shared by threads; a stream
 * matcher belongs to one request (one thread). Regular expressions are POSIX
 * extended (regcomp REG_EXTENDED), matched bytewise on UTF-8 text. */
#ifndef IAS_GUARDRAIL_H
#define IAS_GUARDRAIL_H

#include "ias/common.h"

typedef struct cJSON cJSON;
typedef struct ias_guardrail ias_guardrail;

enum {
    IAS_GR_MAX_RULES = 256,       /* rules per side */
    IAS_GR_MAX_PATTERN = 1024,    /* bytes of a phrase or regex */
    IAS_GR_MAX_HOLDBACK = 4096,   /* characters, upper bound of any window */
    IAS_GR_MAX_VIOLATIONS = 32,   /* violations remembered per stream / prompt */
    IAS_GR_DEFAULT_HOLDBACK = 64, /* characters */
};

/* PII kinds of prompt.redact. */
enum {
    IAS_GR_PII_EMAIL = 1u << 0,
    IAS_GR_PII_PHONE = 1u << 1,
    IAS_GR_PII_CARD = 1u << 2,
    IAS_GR_PII_IBAN = 1u << 3,
    IAS_GR_PII_API_KEY = 1u << 4,
};

/* Compiles and validates a profile document. max_holdback (characters,
 * 1..IAS_GR_MAX_HOLDBACK) caps output.holdback, which defaults to it; every
 * output phrase must fit in the profile's window. name labels violations
 * (copied; may be NULL). On error: IAS_ERR and "<field>: <problem>" in err. */
int ias_guardrail_compile(const cJSON *doc, const char *name, size_t max_holdback,
                          ias_guardrail **out, char *err, size_t errlen) IAS_MUSTCHECK;
void ias_guardrail_free(ias_guardrail *g);
const char *ias_guardrail_name(const ias_guardrail *g);
size_t ias_guardrail_holdback(const ias_guardrail *g);
size_t ias_guardrail_output_rules(const ias_guardrail *g);
/* Prompt deny rules, plus one when PII redaction is on: 0 means the prompt side
 * passes every text through unchanged. */
size_t ias_guardrail_prompt_rules(const ias_guardrail *g);

typedef struct ias_gr_violation {
    const char *profile; /* profile name (points into the compiled profile) */
    const char *rule_id; /* rule id, or the PII kind ("pii:email") */
    bool deny;           /* deny (else redact) */
} ias_gr_violation;

/* ---- prompt side ---- */
typedef struct ias_gr_prompt_result {
    bool deny;           /* a prompt.deny rule matched: refuse the request */
    const char *message; /* the deny rule's message ("" if none) */
    size_t nredactions;  /* spans replaced */
    ias_gr_violation v[IAS_GR_MAX_VIOLATIONS];
    size_t nv;
} ias_gr_prompt_result;

/* Applies g's prompt rules to the NUL-terminated text of one message: deny
 * patterns first (on a match res->deny is set and *out is NULL), then PII
 * redaction. *out (malloc'd, NUL-terminated, caller frees) holds the text to
 * send on. res accumulates over calls (memset it to 0 first). */
int ias_guardrail_prompt(const ias_guardrail *g, const char *text, char **out, size_t *outlen,
                         ias_gr_prompt_result *res) IAS_MUSTCHECK;

/* Replaces PII of the kinds in mask with "[REDACTED_<KIND>]" (no profile
 * needed; the API-key regex is compiled per call). Returns the number of spans
 * replaced; *out as above. Exposed for tests. */
size_t ias_guardrail_redact_pii(const char *text, unsigned mask, char **out, size_t *outlen);
bool ias_guardrail_luhn_ok(const char *digits, size_t n);
bool ias_guardrail_iban_ok(const char *iban, size_t n); /* spaces allowed */

/* ---- output side: stream matcher ---- */
typedef struct ias_gr_stream ias_gr_stream;

typedef enum {
    IAS_GR_CONTINUE = 0, /* send *out, feed more */
    IAS_GR_STOP = 1,     /* a deny rule matched: send *out (the text before the match),
                            then end the stream with finish_reason "content_filter" */
} ias_gr_status;

/* A matcher over the output rules of the given profiles (borrowed; they must
 * outlive it). Its window is the largest profile hold-back, capped at
 * max_holdback. With no output rules it passes text through (still never
 * splitting a UTF-8 character). */
ias_gr_stream *ias_gr_stream_new(const ias_guardrail *const *profiles, size_t nprofiles,
                                 size_t max_holdback);
void ias_gr_stream_free(ias_gr_stream *s);
/* Feeds len bytes of generated text; final=true at the end of the generation
 * flushes everything held back. *out / *outlen: text that may go to the client
 * now (valid until the next call). At most holdback characters (plus an
 * incomplete UTF-8 sequence) stay held between calls. After IAS_GR_STOP every
 * later call returns IAS_GR_STOP with nothing. */
ias_gr_status ias_gr_stream_feed(ias_gr_stream *s, const char *data, size_t len, bool final,
                                 const char **out, size_t *outlen);
size_t ias_gr_stream_holdback(const ias_gr_stream *s); /* characters */
size_t ias_gr_stream_held(const ias_gr_stream *s);     /* bytes held right now */
/* Violations so far (at most IAS_GR_MAX_VIOLATIONS kept). */
size_t ias_gr_stream_violations(const ias_gr_stream *s, const ias_gr_violation **v);

#endif
