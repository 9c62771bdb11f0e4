/* The policy evaluator: validation errors name the field, deny wins, org
 * scope only narrows, allowed_models default rule, time windows, CIDRs. */
#include "testlib.h"

#include "ias/policy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

static ias_policy *compile(const char *json, ias_policy_scope scope, int version)
{
    cJSON *doc = cJSON_Parse(json);
    ias_policy *p = NULL;
    char err[256] = "";
    assert_non_null(doc);
    if (ias_policy_compile(doc, scope, scope == IAS_POLICY_GLOBAL ? "pg" : "po", version, &p, err,
                           sizeof(err)) != IAS_OK)
        fail_msg("compile failed: %s", err);
    cJSON_Delete(doc);
    return p;
}

static void expect_error(const char *json, ias_policy_scope scope, const char *want)
{
    cJSON *doc = cJSON_Parse(json);
    ias_policy *p = NULL;
    char err[256] = "";
    assert_non_null(doc);
    assert_int_equal(ias_policy_compile(doc, scope, "x", 1, &p, err, sizeof(err)), IAS_ERR);
    assert_null(p);
    if (strstr(err, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", err, want);
    cJSON_Delete(doc);
}

static const char *const models[] = {"mock-gpt", "llama-3"};

static ias_policy_request base_req(void)
{
    ias_policy_request r = {
        .user_id = "u1",
        .org_id = "o1",
        .role = "org_user",
        .allowed_models = models,
        .nallowed_models = 2,
        .action = "inference",
        .model = "mock-gpt",
        .source_ip = "10.1.2.3",
        .time_s = 1795341600, /* 2026-11-22T10:00:00Z, a Sunday */
    };
    return r;
}

static void test_validation(void **state)
{
    expect_error("{}", IAS_POLICY_GLOBAL, "rules: required");
    expect_error("{\"rules\":[],\"extra\":1}", IAS_POLICY_GLOBAL, "extra: unknown attribute");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"maybe\"}]}", IAS_POLICY_GLOBAL,
                 "rules[0].effect");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"resource\":{"
                 "\"colour\":[\"x\"]}}}]}",
                 IAS_POLICY_GLOBAL, "rules[0].match.resource.colour: unknown attribute");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"environment\":{"
                 "\"source_cidr\":[\"10.0.0.0/33\"]}}}]}",
                 IAS_POLICY_GLOBAL, "rules[0].match.environment.source_cidr[0]");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"environment\":{"
                 "\"time\":{\"from\":\"25:00\"}}}}]}",
                 IAS_POLICY_GLOBAL, "rules[0].match.environment.time.from");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\"},{\"id\":\"a\",\"effect\":"
                 "\"deny\",\"match\":{\"action\":[\"inference\"]}}]}",
                 IAS_POLICY_GLOBAL, "rules[1].id: duplicate");
    /* same match (as sets, in any order), opposite effects */
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"allow\",\"match\":{\"resource\":{"
                 "\"model\":[\"x\",\"y\"]}}},{\"id\":\"b\",\"effect\":\"deny\",\"match\":{"
                 "\"resource\":{\"model\":[\"y\",\"x\"]}}}]}",
                 IAS_POLICY_GLOBAL, "rules[1].match: conflicts with rules[0]");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"subject\":{"
                 "\"org_id\":[\"o2\"]}}}]}",
                 IAS_POLICY_ORG, "rules[0].match.subject.org_id: not allowed");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"obligations\":{"
                 "\"guardrails\":[\"pii\"]}}]}",
                 IAS_POLICY_GLOBAL, "only an allow rule");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"action\":["
                 "\"delete-all\"]}}]}",
                 IAS_POLICY_GLOBAL, "rules[0].match.action[0]");
    expect_error("{\"rules\":[{\"id\":\"a\",\"effect\":\"deny\",\"match\":{\"subject\":{"
                 "\"role\":[]}}}]}",
                 IAS_POLICY_GLOBAL, "must not be empty");
}

static void test_allowed_models_default(void **state)
{
    ias_policy_request r = base_req();
    ias_policy_decision d;

    ias_policy_evaluate(NULL, NULL, &r, &d);
    assert_true(d.allow);
    r.model = "secret-model";
    ias_policy_evaluate(NULL, NULL, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "builtin:allowed_models");
    r = base_req();
    r.allowed_models = NULL;
    ias_policy_evaluate(NULL, NULL, &r, &d);
    assert_false(d.allow);
    assert_non_null(strstr(d.reasons[0].message, "absent"));
    /* manage actions do not need a model */
    r.action = "manage:users";
    r.model = NULL;
    ias_policy_evaluate(NULL, NULL, &r, &d);
    assert_true(d.allow);
}

static void test_deny_wins(void **state)
{
    ias_policy *g = compile(
        "{\"rules\":["
        "{\"id\":\"allow-all\",\"effect\":\"allow\",\"obligations\":{\"guardrails\":[\"pii\"]}},"
        "{\"id\":\"no-llama\",\"effect\":\"deny\",\"message\":\"llama is off\","
        "\"match\":{\"resource\":{\"model\":[\"llama-*\"]}}}]}",
        IAS_POLICY_GLOBAL, 3);
    ias_policy_request r = base_req();
    ias_policy_decision d;

    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    assert_int_equal(d.nobligations, 1);
    assert_string_equal(d.obligations[0], "pii");
    r.model = "llama-3";
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_int_equal(d.nreasons, 1); /* only the deny explains a deny */
    assert_string_equal(d.reasons[0].rule_id, "no-llama");
    assert_string_equal(d.reasons[0].policy_id, "pg");
    assert_string_equal(d.reasons[0].message, "llama is off");
    assert_int_equal(d.nobligations, 0);
    assert_int_equal(ias_policy_version(g), 3);
    ias_policy_free(g);
}

static void test_scope_narrowing(void **state)
{
    ias_policy *g = compile("{\"rules\":[{\"id\":\"no-tagged\",\"effect\":\"deny\",\"match\":{"
                            "\"resource\":{\"tags\":[\"restricted\"]}}}]}",
                            IAS_POLICY_GLOBAL, 1);
    /* the org tries to allow what global denies, denies more, adds an obligation */
    ias_policy *o = compile(
        "{\"rules\":["
        "{\"id\":\"org-allow\",\"effect\":\"allow\",\"match\":{\"resource\":{\"tags\":["
        "\"restricted\"]}},\"obligations\":{\"guardrails\":[\"strict\"]}},"
        "{\"id\":\"interns\",\"effect\":\"deny\",\"match\":{\"subject\":{\"role\":[\"intern\"]}}}"
        "]}",
        IAS_POLICY_ORG, 2);
    static const char *const tags[] = {"public", "restricted"};
    ias_policy_request r = base_req();
    ias_policy_decision d;

    r.tags = tags;
    r.ntags = 2;
    ias_policy_evaluate(g, o, &r, &d);
    assert_false(d.allow); /* org allow never beats a global deny */
    assert_string_equal(d.reasons[0].rule_id, "no-tagged");
    r.ntags = 1; /* only "public" */
    ias_policy_evaluate(g, o, &r, &d);
    assert_true(d.allow);
    r.role = "intern";
    ias_policy_evaluate(g, o, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "interns");
    assert_string_equal(d.reasons[0].policy_id, "po");
    ias_policy_free(g);
    ias_policy_free(o);

    /* default_effect deny in the org scope: an org allow rule is needed too */
    g = compile("{\"rules\":[]}", IAS_POLICY_GLOBAL, 1);
    o = compile("{\"default_effect\":\"deny\",\"rules\":[{\"id\":\"only-mock\",\"effect\":"
                "\"allow\",\"match\":{\"resource\":{\"model\":[\"mock-gpt\"]}},"
                "\"obligations\":{\"guardrails\":[\"strict\"]}}]}",
                IAS_POLICY_ORG, 1);
    r = base_req();
    ias_policy_evaluate(g, o, &r, &d);
    assert_true(d.allow);
    assert_int_equal(d.nobligations, 1);
    assert_int_equal(d.obligation_scope[0], IAS_POLICY_ORG);
    r.model = "llama-3";
    ias_policy_evaluate(g, o, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "default");
    ias_policy_free(g);
    ias_policy_free(o);
}

static void test_time_windows(void **state)
{
    ias_policy *g =
        compile("{\"rules\":["
                "{\"id\":\"office\",\"effect\":\"deny\",\"match\":{\"environment\":{\"time\":{"
                "\"days\":[\"mon\",\"tue\",\"wed\",\"thu\",\"fri\"],\"from\":\"09:00\",\"to\":"
                "\"17:00\"}}}},"
                "{\"id\":\"night\",\"effect\":\"deny\",\"match\":{\"environment\":{\"time\":{"
                "\"from\":\"22:00\",\"to\":\"06:00\"}}}}]}",
                IAS_POLICY_GLOBAL, 1);
    ias_policy_request r = base_req();
    ias_policy_decision d;
    int64_t t;

    assert_int_equal(ias_policy_parse_time("2026-11-23T09:00:00Z", &t), IAS_OK); /* Monday */
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "office");
    assert_int_equal(ias_policy_parse_time("2026-11-23T16:59:59.5Z", &t), IAS_OK);
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_int_equal(ias_policy_parse_time("2026-11-23T17:00:00Z", &t), IAS_OK); /* end excl. */
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    assert_int_equal(ias_policy_parse_time("2026-11-22T10:00:00Z", &t), IAS_OK); /* Sunday */
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    /* wrapping window, and offsets are converted to UTC */
    assert_int_equal(ias_policy_parse_time("2026-11-22T23:30:00+00:00", &t), IAS_OK);
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "night");
    assert_int_equal(ias_policy_parse_time("2026-11-22T06:30:00+02:00", &t), IAS_OK); /* 04:30Z */
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_int_equal(ias_policy_parse_time("2026-11-22T06:00:00Z", &t), IAS_OK);
    r.time_s = t;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    assert_int_equal(ias_policy_parse_time("2026-11-22 06:00:00Z", &t), IAS_ERR);
    assert_int_equal(ias_policy_parse_time("2026-13-22T06:00:00Z", &t), IAS_ERR);
    ias_policy_free(g);
}

static void test_cidr(void **state)
{
    ias_policy *g = compile(
        "{\"rules\":[{\"id\":\"outside\",\"effect\":\"deny\",\"except\":{\"environment\":{"
        "\"source_cidr\":[\"10.0.0.0/8\",\"192.168.1.128/25\",\"2001:db8::/32\",\"::1\"]}}}]}",
        IAS_POLICY_GLOBAL, 1);
    static const struct {
        const char *ip;
        bool allow;
    } cases[] = {
        {"10.0.0.1", true},
        {"10.255.255.255", true},
        {"11.0.0.1", false},
        {"192.168.1.128", true},
        {"192.168.1.255", true},
        {"192.168.1.127", false},
        {"2001:db8::1", true},
        {"2001:db8:ffff::", true},
        {"2001:db9::1", false},
        {"::1", true},
        {"::2", false},
        {"::ffff:10.1.2.3", true},
        {"::ffff:11.1.2.3", false},
    };
    ias_policy_request r = base_req();
    ias_policy_decision d;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        r.source_ip = cases[i].ip;
        ias_policy_evaluate(g, NULL, &r, &d);
        if (d.allow != cases[i].allow)
            fail_msg("%s: want %s", cases[i].ip, cases[i].allow ? "allow" : "deny");
    }
    r.source_ip = NULL; /* unknown address: not inside, so denied */
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    ias_policy_free(g);
}

static void test_subject_region_actions(void **state)
{
    ias_policy *g = compile(
        "{\"rules\":["
        "{\"id\":\"eu-only\",\"effect\":\"deny\",\"match\":{\"resource\":{\"tags\":[\"eu\"]}},"
        "\"except\":{\"environment\":{\"region\":[\"eu-west\",\"eu-central\"]}}},"
        "{\"id\":\"no-manage\",\"effect\":\"deny\",\"match\":{\"action\":[\"manage:*\"],"
        "\"subject\":{\"role\":[\"org_user\"]}}},"
        "{\"id\":\"block-user\",\"effect\":\"deny\",\"match\":{\"subject\":{\"user_id\":["
        "\"bad\"]}}}]}",
        IAS_POLICY_GLOBAL, 1);
    static const char *const tags[] = {"eu"};
    ias_policy_request r = base_req();
    ias_policy_decision d;

    r.tags = tags;
    r.ntags = 1;
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow); /* no region */
    r.region = "eu-west";
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    r.action = "manage:keys";
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    assert_string_equal(d.reasons[0].rule_id, "no-manage");
    r.role = "org_admin";
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_true(d.allow);
    r.user_id = "bad";
    ias_policy_evaluate(g, NULL, &r, &d);
    assert_false(d.allow);
    ias_policy_free(g);
}

static void test_request_parse(void **state)
{
    cJSON *j = cJSON_Parse(
        "{\"subject\":{\"user_id\":\"u\",\"org_id\":\"o\",\"role\":\"org_user\","
        "\"allowed_models\":[\"a\",\"b\"]},\"action\":\"inference\",\"resource\":{\"model\":"
        "\"a\",\"tags\":[\"t\"]},\"environment\":{\"source_ip\":\"::1\",\"region\":null,"
        "\"time\":\"2026-11-22T10:00:00Z\"}}");
    ias_policy_request r;
    ias_policy_req_scratch s;
    char err[128];

    assert_int_equal(ias_policy_request_parse(j, &r, &s, err, sizeof(err)), IAS_OK);
    assert_int_equal(r.nallowed_models, 2);
    assert_string_equal(r.model, "a");
    assert_null(r.region);
    assert_int_equal(r.time_s, 1795341600);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"subject\":{},\"action\":\"inference\",\"environment\":{\"source_ip\":"
                    "\"nope\"}}");
    assert_int_equal(ias_policy_request_parse(j, &r, &s, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "environment.source_ip"));
    cJSON_Delete(j);
    j = cJSON_Parse("{\"subject\":{},\"action\":\"fly\"}");
    assert_int_equal(ias_policy_request_parse(j, &r, &s, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "action"));
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_allowed_models_default),
        cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_scope_narrowing),
        cmocka_unit_test(test_time_windows),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_subject_region_actions),
        cmocka_unit_test(test_request_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
