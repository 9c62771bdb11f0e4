/* libcommon audit_event: every producer's audit.recorded.v1 shape, with the
 * schema's null rules (empty or missing ids are null, a request id the schema
 * would refuse becomes null rather than failing the event). */
#include "ias/audit_event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static const char *str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool is_null(const cJSON *o, const char *name)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(o, name));
}

static void test_full_event(void **state)
{
    char eid[IAS_UUID_STR_LEN + 1];
    cJSON *details = cJSON_CreateObject(), *ev;
    const cJSON *actor, *res;

    (void)state;
    cJSON_AddStringToObject(details, "k", "v");
    ev = ias_audit_event_new(&(ias_audit_fields){.service = "pdp",
                                                 .actor_type = "user",
                                                 .actor_id = "u-1",
                                                 .org_id = "0190a0b0-0000-7000-8000-000000000001",
                                                 .action = "policy_denied",
                                                 .resource_type = "model",
                                                 .resource_id = "gpt-5",
                                                 .request_id = "req-1:a.b_c",
                                                 .outcome = "denied"},
                             details, eid);
    assert_non_null(ev);
    assert_true(ias_uuid_valid(eid));
    assert_string_equal(str(ev, "event_id"), eid);
    assert_non_null(str(ev, "occurred_at"));
    assert_string_equal(str(ev, "service"), "pdp");
    actor = cJSON_GetObjectItemCaseSensitive(ev, "actor");
    assert_string_equal(str(actor, "type"), "user");
    assert_string_equal(str(actor, "id"), "u-1");
    assert_string_equal(str(ev, "org_id"), "0190a0b0-0000-7000-8000-000000000001");
    assert_string_equal(str(ev, "action"), "policy_denied");
    res = cJSON_GetObjectItemCaseSensitive(ev, "resource");
    assert_string_equal(str(res, "type"), "model");
    assert_string_equal(str(res, "id"), "gpt-5");
    assert_string_equal(str(ev, "request_id"), "req-1:a.b_c");
    assert_string_equal(str(ev, "outcome"), "denied");
    assert_string_equal(str(cJSON_GetObjectItemCaseSensitive(ev, "details"), "k"), "v");
    assert_int_equal(cJSON_GetArraySize(ev), 10); /* exactly the schema's fields */
    cJSON_Delete(ev);
}

static void test_nulls(void **state)
{
    char eid[IAS_UUID_STR_LEN + 1], long_id[200];
    const char *bad_ids[] = {NULL, "", "has space", "semi;colon", long_id};
    cJSON *ev;

    (void)state;
    memset(long_id, 'a', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        ev = ias_audit_event_new(&(ias_audit_fields){.service = "users",
                                                     .actor_type = "anonymous",
                                                     .actor_id = "",
                                                     .org_id = NULL,
                                                     .action = "login_failed",
                                                     .resource_type = "session",
                                                     .resource_id = i % 2 ? "" : NULL,
                                                     .request_id = bad_ids[i],
                                                     .outcome = "failure"},
                                 NULL, eid);
        assert_true(is_null(cJSON_GetObjectItemCaseSensitive(ev, "actor"), "id"));
        assert_true(is_null(ev, "org_id"));
        assert_true(is_null(cJSON_GetObjectItemCaseSensitive(ev, "resource"), "id"));
        assert_true(is_null(ev, "request_id"));
        assert_true(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(ev, "details")));
        cJSON_Delete(ev);
    }
    long_id[128] = '\0';
    assert_true(ias_audit_request_id_ok(long_id));
    long_id[128] = 'a';
    assert_false(ias_audit_request_id_ok(long_id));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_event),
        cmocka_unit_test(test_nulls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
