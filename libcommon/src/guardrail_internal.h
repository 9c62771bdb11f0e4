/* Private to guardrail*.c: the compiled profile. */
#ifndef IAS_GUARDRAIL_INTERNAL_H
#define IAS_GUARDRAIL_INTERNAL_H

#include "ias/guardrail.h"

#include <regex.h>

typedef struct gr_rule {
    char *id;
    bool deny;         /* else redact */
    char *message;     /* prompt deny message */
    char *replacement; /* output redact replacement */
    regex_t re;
} gr_rule;

struct ias_guardrail {
    char *name;
    gr_rule *prompt_deny;
    size_t nprompt_deny;
    unsigned redact_mask;
    gr_rule *output;
    size_t noutput;
    size_t holdback; /* characters */
};

/* regexec over buf[from, to) (REG_STARTEND, so NUL bytes do not end the text);
 * offsets are absolute. notbol: buf[from] is not the start of the text. */
bool gr_regex_find(const regex_t *re, const char *buf, size_t from, size_t to, bool notbol,
                   size_t *so, size_t *eo);

#endif
