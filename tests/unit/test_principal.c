/* ias_principal_require against a real in-process server and real tokens. */
#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ias/http_server.h"
#include "ias/jwt.h"
#include "ias/principal.h"

static const char secret[] = "0123456789abcdef0123456789abcdef-test-secret";

static void handle_whoami(ias_req *r, void *ctx)
{
    ias_principal p;
    char body[256];

    if (ias_principal_require(r, secret, strlen(secret), &p) != IAS_OK)
        return;
    snprintf(body, sizeof(body), "{\"user\":\"%s\",\"org\":\"%s\",\"role\":\"%s\",\"admin\":%s}",
             p.user_id, p.org_id, p.role, ias_principal_is_system_admin(&p) ? "true" : "false");
    (void)ias_reply_json_str(r, 200, body);
}

static const ias_route routes[] = {{"GET", "/api/v1/whoami", handle_whoami}};

static int setup(void **state)
{
    ias_server_opts o = {0};
    ias_server *srv;

    o.service = "test";
    o.workers = 1;
    o.routes = routes;
    o.nroutes = 1;
    srv = ias_server_new(&o);
    if (!srv || ias_server_start(srv) != IAS_OK)
        return -1;
    *state = srv;
    return 0;
}

static int teardown(void **state)
{
    ias_server *srv = *state;
    ias_server_stop(srv);
    ias_server_wait(srv);
    ias_server_free(srv);
    return 0;
}

static char *token(const char *sub, const char *org, const char *role, int64_t ttl, const char *key)
{
    ias_jwt_claims c = {0};
    char *out = NULL;

    snprintf(c.sub, sizeof(c.sub), "%s", sub);
    snprintf(c.org, sizeof(c.org), "%s", org);
    snprintf(c.role, sizeof(c.role), "%s", role);
    snprintf(c.typ, sizeof(c.typ), "%s", IAS_JWT_TYP_ACCESS);
    assert_int_equal(ias_jwt_issue(key, strlen(key), &c, ttl, &out), IAS_OK);
    return out;
}

static int whoami(ias_server *srv, const char *auth, char *out, size_t len)
{
    char hdr[9000] = "";

    if (auth)
        snprintf(hdr, sizeof(hdr), "Authorization: %s\r\n", auth);
    return ias_test_http(ias_server_port(srv), "GET", "/api/v1/whoami", hdr, NULL, out, len);
}

static void test_valid_token(void **state)
{
    char *t = token("u-1", "org-1", "org_admin", 3600, secret);
    char auth[9000], out[4096];

    snprintf(auth, sizeof(auth), "Bearer %s", t);
    assert_int_equal(whoami(*state, auth, out, sizeof(out)), 200);
    assert_non_null(strstr(out, "\"user\":\"u-1\",\"org\":\"org-1\",\"role\":\"org_admin\""));
    free(t);
}

static void test_refusals(void **state)
{
    char *other = token("u-1", "org-1", "org_admin", 3600, "another-secret-another-secret-xyz");
    char *norole = token("u-1", "org-1", "", 3600, secret);
    char auth[9000], out[4096];

    assert_int_equal(whoami(*state, NULL, out, sizeof(out)), 401);
    assert_non_null(strstr(out, "application/problem+json"));
    assert_non_null(strstr(out, "WWW-Authenticate: Bearer"));
    assert_int_equal(whoami(*state, "Basic dXNlcjpwYXNz", out, sizeof(out)), 401);
    assert_int_equal(whoami(*state, "Bearer not.a.jwt", out, sizeof(out)), 401);
    snprintf(auth, sizeof(auth), "Bearer %s", other);
    assert_int_equal(whoami(*state, auth, out, sizeof(out)), 401);
    snprintf(auth, sizeof(auth), "Bearer %s", norole);
    assert_int_equal(whoami(*state, auth, out, sizeof(out)), 401);
    free(other);
    free(norole);
}

static void test_org_scope(void **state)
{
    ias_principal admin = {.role = IAS_ROLE_SYSTEM_ADMIN};
    ias_principal user = {.org_id = "org-1", .role = IAS_ROLE_ORG_USER};
    ias_principal orgless = {.role = IAS_ROLE_ORG_ADMIN};

    assert_true(ias_principal_in_org(&admin, "org-9"));
    assert_true(ias_principal_in_org(&user, "org-1"));
    assert_false(ias_principal_in_org(&user, "org-2"));
    assert_false(ias_principal_in_org(&user, NULL));
    assert_false(ias_principal_in_org(&orgless, ""));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_token),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_org_scope),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
