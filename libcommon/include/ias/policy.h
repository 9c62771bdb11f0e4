/* ABAC policy documents: parsing with validation, and the pure rule evaluator
 * used by pdp (format: docs/architecture/pdp.md).
 *
 * A compiled policy is immutable after ias_policy_compile and may be read by
 * any number of threads at once. Evaluation allocates nothing but the result's
 * reason and obligation lists, which point into the compiled policies (valid
 * as long as they are). Deny wins; an org-scope policy can only narrow what
 * the global one allows: its allow rules never override a deny, they only add
 * obligations (and satisfy its own default_effect "deny"). */
#ifndef IAS_POLICY_H
#define IAS_POLICY_H

#include "ias/common.h"

typedef struct cJSON cJSON;
typedef struct ias_policy ias_policy;

enum {
    IAS_POLICY_MAX_RULES = 256,
    IAS_POLICY_MAX_LIST = 256,       /* items in any attribute list */
    IAS_POLICY_MAX_STR = 256,        /* bytes of any string */
    IAS_POLICY_MAX_REASONS = 16,     /* reasons kept per decision */
    IAS_POLICY_MAX_OBLIGATIONS = 16, /* guardrail profiles per decision */
};

typedef enum { IAS_POLICY_GLOBAL = 0, IAS_POLICY_ORG } ias_policy_scope;
typedef enum { IAS_EFFECT_ALLOW = 0, IAS_EFFECT_DENY } ias_policy_effect;

/* Parses and validates doc for scope. On error returns IAS_ERR, *out NULL, and
 * writes "<field path>: <problem>" (e.g. "rules[2].match.resource.model: must be
 * an array of strings") into err. Unknown attributes, bad CIDRs/times, duplicate
 * rule ids and conflicting rules (same match, opposite effects) are errors.
 * policy_id and version label the reasons (copied; may be NULL). */
int ias_policy_compile(const cJSON *doc, ias_policy_scope scope, const char *policy_id, int version,
                       ias_policy **out, char *err, size_t errlen) IAS_MUSTCHECK;
void ias_policy_free(ias_policy *p);
int ias_policy_version(const ias_policy *p);
const char *ias_policy_id(const ias_policy *p);
size_t ias_policy_nrules(const ias_policy *p);
/* Guardrail profile names referenced by obligations (for resolution by the caller). */
size_t ias_policy_obligation_names(const ias_policy *p, const char **names, size_t max);

/* A decision request, already parsed (strings borrowed). */
typedef struct ias_policy_request {
    const char *user_id, *org_id, *role; /* NULL: unknown (never matches a list) */
    const char *const *allowed_models;   /* NULL: absent (inference is denied) */
    size_t nallowed_models;
    const char *action; /* "inference" or "manage:<thing>" */
    const char *model;  /* resource.model, NULL if none */
    const char *const *tags;
    size_t ntags;
    const char *source_ip; /* NULL or an IPv4/IPv6 address */
    const char *region;    /* NULL when the ingress set none */
    int64_t time_s;        /* UTC seconds since the epoch */
} ias_policy_request;

typedef struct ias_policy_reason {
    const char *rule_id;
    const char *policy_id; /* NULL for built-in rules */
    ias_policy_effect effect;
    const char *message;
} ias_policy_reason;

typedef struct ias_policy_decision {
    bool allow;
    ias_policy_reason reasons[IAS_POLICY_MAX_REASONS];
    size_t nreasons;
    /* Guardrail profile names with the scope that named them (dedup'd). */
    const char *obligations[IAS_POLICY_MAX_OBLIGATIONS];
    ias_policy_scope obligation_scope[IAS_POLICY_MAX_OBLIGATIONS];
    size_t nobligations;
} ias_policy_decision;

/* Evaluates the built-in allowed_models rule (for "inference"), then the
 * global policy (may be NULL: default allow), then the org policy (may be
 * NULL). Pure: same inputs, same decision. */
void ias_policy_evaluate(const ias_policy *global, const ias_policy *org,
                         const ias_policy_request *req, ias_policy_decision *out);

/* Parses "2026-11-22T10:11:12Z" / "...12.345Z" / "+01:00" offsets into UTC
 * seconds. IAS_ERR when malformed. */
int ias_policy_parse_time(const char *s, int64_t *out) IAS_MUSTCHECK;

/* Parses a JSON decision request body ({"subject","action","resource",
 * "environment"}) into req, borrowing strings from json; arrays are written
 * into the caller's scratch (up to 64 allowed models and 64 tags). On error
 * writes "<field>: <problem>" and returns IAS_ERR. */
typedef struct ias_policy_req_scratch {
    const char *models[64];
    const char *tags[64];
} ias_policy_req_scratch;
int ias_policy_request_parse(const cJSON *json, ias_policy_request *req,
                             ias_policy_req_scratch *scratch, char *err,
                             size_t errlen) IAS_MUSTCHECK;

#endif
