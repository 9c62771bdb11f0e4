#include "testlib.h"

#include "ias/http_server.h"

#include <string.h>

static void h(ias_req *r, void *ctx) {}

static const ias_route routes[] = {
    {"GET", "/", h},                                 /* 0 */
    {"GET", "/api/v1/orgs", h},                      /* 1 */
    {"POST", "/api/v1/orgs", h},                     /* 2 */
    {"GET", "/api/v1/orgs/{id}", h},                 /* 3 */
    {"DELETE", "/api/v1/orgs/{id}", h},              /* 4 */
    {"GET", "/api/v1/orgs/{id}/users/{user_id}", h}, /* 5 */
    {"GET", "/api/v1/users/me", h},                  /* 6 */
    {"GET", "/api/v1/users/{id}", h},                /* 7 */
    {"GET", "/files/{*rest}", h},                    /* 8 */
    {"PUT", "/files/{*rest}", h},                    /* 9 */
    {"POST", "/v1/chat/completions", h},             /* 10 */
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

static const char *param(const ias_route_match *m, const char *name)
{
    for (size_t i = 0; i < m->nparams; i++) {
        if (m->params[i].name_len == strlen(name) &&
            memcmp(m->params[i].name, name, m->params[i].name_len) == 0)
            return m->params[i].value;
    }
    return NULL;
}

static int find(const char *method, const char *path, ias_route_match *m)
{
    return ias_route_find(routes, NROUTES, method, path, m);
}

static void test_literals(void **state)
{
    ias_route_match m;

    assert_int_equal(find("GET", "/", &m), 0);
    assert_int_equal(m.route, 0);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(find("GET", "/api/v1/orgs", &m), 1);
    assert_int_equal(find("POST", "/api/v1/orgs", &m), 2);
    assert_int_equal(find("POST", "/v1/chat/completions", &m), 10);
    /* strict: no trailing slash, no prefix, no case folding */
    assert_int_equal(find("GET", "/api/v1/orgs/", &m), -1);
    assert_int_equal(find("GET", "/api/v1/org", &m), -1);
    assert_int_equal(find("GET", "/API/v1/orgs", &m), -1);
    assert_int_equal(find("GET", "/api//v1/orgs", &m), -1);
    assert_int_equal(find("GET", "", &m), -1);
    assert_int_equal(find("GET", "api/v1/orgs", &m), -1);
    /* literal segments compare after decoding */
    assert_int_equal(find("GET", "/api/v1/%6Frgs", &m), 1);
}

static void test_params(void **state)
{
    ias_route_match m;

    assert_int_equal(find("GET", "/api/v1/orgs/42", &m), 3);
    assert_int_equal(m.nparams, 1);
    assert_string_equal(param(&m, "id"), "42");
    assert_int_equal(find("GET", "/api/v1/orgs/o1/users/u%20two", &m), 5);
    assert_int_equal(m.nparams, 2);
    assert_string_equal(param(&m, "id"), "o1");
    assert_string_equal(param(&m, "user_id"), "u two");
    /* an encoded slash stays inside the parameter; '+' is not a space in paths */
    assert_int_equal(find("GET", "/api/v1/orgs/a%2Fb+c", &m), 3);
    assert_string_equal(param(&m, "id"), "a/b+c");
    /* empty segment does not match a parameter */
    assert_int_equal(find("GET", "/api/v1/orgs//users/x", &m), -1);
    /* first match wins: the literal route is listed before {id} */
    assert_int_equal(find("GET", "/api/v1/users/me", &m), 6);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(find("GET", "/api/v1/users/you", &m), 7);
    assert_string_equal(param(&m, "id"), "you");
}

static void test_bad_params(void **state)
{
    ias_route_match m;
    char path[600];

    assert_int_equal(find("GET", "/api/v1/orgs/%zz", &m), -1);
    assert_int_equal(find("GET", "/api/v1/orgs/%00", &m), -1);
    assert_int_equal(find("GET", "/api/v1/orgs/%4", &m), -1);
    /* 255 decoded bytes fit, 256 do not */
    strcpy(path, "/api/v1/orgs/");
    memset(path + strlen(path), 'x', 255);
    path[13 + 255] = '\0';
    assert_int_equal(find("GET", path, &m), 3);
    assert_int_equal(strlen(param(&m, "id")), 255);
    strcat(path, "x");
    assert_int_equal(find("GET", path, &m), -1);
}

static void test_rest(void **state)
{
    ias_route_match m;

    assert_int_equal(find("GET", "/files/a/b/c.txt", &m), 8);
    assert_string_equal(param(&m, "rest"), "a/b/c.txt");
    assert_int_equal(find("GET", "/files/", &m), 8);
    assert_string_equal(param(&m, "rest"), "");
    assert_int_equal(find("GET", "/files", &m), 8);
    assert_string_equal(param(&m, "rest"), "");
    assert_int_equal(find("PUT", "/files/x%20y/z", &m), 9);
    assert_string_equal(param(&m, "rest"), "x y/z");
    assert_int_equal(find("GET", "/filesx", &m), -1);
    assert_int_equal(find("GET", "/files/%zz", &m), -1);
}

static void test_method_mismatch(void **state)
{
    ias_route_match m;
    char allow[64];

    assert_int_equal(find("PATCH", "/api/v1/orgs/42", &m), -2);
    assert_int_equal(m.route, -2);
    assert_int_equal(m.nparams, 0);
    assert_int_equal(find("DELETE", "/api/v1/orgs", &m), -2);
    assert_int_equal(find("POST", "/nowhere", &m), -1);
    /* HEAD is served by GET routes */
    assert_int_equal(find("HEAD", "/api/v1/orgs/42", &m), 3);
    assert_int_equal(find("HEAD", "/v1/chat/completions", &m), -2);

    assert_int_equal(ias_route_allow(routes, NROUTES, "/api/v1/orgs/42", allow, sizeof(allow)),
                     IAS_OK);
    assert_string_equal(allow, "GET, HEAD, DELETE");
    assert_int_equal(ias_route_allow(routes, NROUTES, "/api/v1/orgs", allow, sizeof(allow)),
                     IAS_OK);
    assert_string_equal(allow, "GET, HEAD, POST");
    assert_int_equal(ias_route_allow(routes, NROUTES, "/v1/chat/completions", allow, sizeof(allow)),
                     IAS_OK);
    assert_string_equal(allow, "POST");
    assert_int_equal(ias_route_allow(routes, NROUTES, "/nope", allow, sizeof(allow)), IAS_OK);
    assert_string_equal(allow, "");
    assert_int_equal(ias_route_allow(routes, NROUTES, "/api/v1/orgs", allow, 5), IAS_ERR);
}

static void test_validate(void **state)
{
    char err[256];
    const ias_route ok[] = {{"GET", "/a/{x}/b/{y}/{*rest}", h}};
    const ias_route bad_method[] = {{"FETCH", "/a", h}};
    const ias_route no_slash[] = {{"GET", "a", h}};
    const ias_route rest_not_last[] = {{"GET", "/a/{*rest}/b", h}};
    const ias_route dup[] = {{"GET", "/a/{id}/b/{id}", h}};
    const ias_route empty_name[] = {{"GET", "/a/{}", h}};
    const ias_route brace_literal[] = {{"GET", "/a/v{x}", h}};
    const ias_route no_handler[] = {{"GET", "/a", NULL}};
    const ias_route too_many[] = {{"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", h}};

    assert_int_equal(ias_route_validate(routes, NROUTES, err, sizeof(err)), IAS_OK);
    assert_int_equal(ias_route_validate(ok, 1, err, sizeof(err)), IAS_OK);
    assert_int_equal(ias_route_validate(bad_method, 1, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "method"));
    assert_int_equal(ias_route_validate(no_slash, 1, err, sizeof(err)), IAS_ERR);
    assert_int_equal(ias_route_validate(rest_not_last, 1, err, sizeof(err)), IAS_ERR);
    assert_int_equal(ias_route_validate(dup, 1, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "duplicate"));
    assert_int_equal(ias_route_validate(empty_name, 1, err, sizeof(err)), IAS_ERR);
    assert_int_equal(ias_route_validate(brace_literal, 1, err, sizeof(err)), IAS_ERR);
    assert_int_equal(ias_route_validate(no_handler, 1, err, sizeof(err)), IAS_ERR);
    assert_int_equal(ias_route_validate(too_many, 1, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "too many"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),        cmocka_unit_test(test_params),
        cmocka_unit_test(test_bad_params),      cmocka_unit_test(test_rest),
        cmocka_unit_test(test_method_mismatch), cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
