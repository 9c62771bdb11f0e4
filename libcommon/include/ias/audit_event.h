/* audit.recorded.v1 events (proto/events/audit.recorded.v1.schema.json), built
 * once for every producer so the required fields and their null rules agree. */
#ifndef IAS_AUDIT_EVENT_H
#define IAS_AUDIT_EVENT_H

#include <cjson/cJSON.h>

#include "ias/crypto.h"

typedef struct ias_audit_fields {
    const char *service;       /* producer, e.g. "pdp" */
    const char *actor_type;    /* user, api_key, service, system, anonymous */
    const char *actor_id;      /* NULL or "": null */
    const char *org_id;        /* NULL or "": null (platform-level) */
    const char *action;        /* [a-z0-9_-]{1,64} */
    const char *resource_type; /* [a-z0-9_]{1,64} */
    const char *resource_id;   /* NULL or "": null */
    const char *request_id;    /* NULL, "" or not [A-Za-z0-9._:-]{1,128}: null */
    const char *outcome;       /* success, failure, denied */
} ias_audit_fields;

/* A new event with a fresh UUIDv7 written to event_id and the current time;
 * takes ownership of details (NULL: {}). Never NULL (dies when out of memory). */
cJSON *ias_audit_event_new(const ias_audit_fields *f, cJSON *details,
                           char event_id[IAS_UUID_STR_LEN + 1]);

/* True for a request id the schema accepts. */
bool ias_audit_request_id_ok(const char *s);

#endif
