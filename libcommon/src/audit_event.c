/* audit.recorded.v1 builder (see ias/audit_event.h). */
#include "ias/audit_event.h"

#include <ctype.h>
#include <string.h>

#include "ias/common.h"

bool ias_audit_request_id_ok(const char *s)
{
    size_t n;

    if (s == NULL)
        return false;
    n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++)
        if (!(isalnum((unsigned char)*s) || strchr("._:-", *s) != NULL))
            return false;
    return true;
}

static void add_str_or_null(cJSON *o, const char *name, const char *v)
{
    if (v != NULL && v[0] != '\0')
        cJSON_AddStringToObject(o, name, v);
    else
        cJSON_AddNullToObject(o, name);
}

cJSON *ias_audit_event_new(const ias_audit_fields *f, cJSON *details,
                           char event_id[IAS_UUID_STR_LEN + 1])
{
    char now[32];
    cJSON *o = cJSON_CreateObject(), *x;

    if (o == NULL)
        ias_die("audit event: out of memory");
    ias_uuid_v7(event_id);
    ias_iso8601_ms(ias_wall_ms(), now, sizeof(now));
    cJSON_AddStringToObject(o, "event_id", event_id);
    cJSON_AddStringToObject(o, "occurred_at", now);
    cJSON_AddStringToObject(o, "service", f->service);
    x = cJSON_AddObjectToObject(o, "actor");
    cJSON_AddStringToObject(x, "type", f->actor_type);
    add_str_or_null(x, "id", f->actor_id);
    add_str_or_null(o, "org_id", f->org_id);
    cJSON_AddStringToObject(o, "action", f->action);
    x = cJSON_AddObjectToObject(o, "resource");
    cJSON_AddStringToObject(x, "type", f->resource_type);
    add_str_or_null(x, "id", f->resource_id);
    add_str_or_null(o, "request_id", ias_audit_request_id_ok(f->request_id) ? f->request_id : NULL);
    cJSON_AddStringToObject(o, "outcome", f->outcome);
    cJSON_AddItemToObject(o, "details", details != NULL ? details : cJSON_CreateObject());
    return o;
}
