/* ias-admin output: aligned tables without trailing blanks, cell rendering
 * (numbers, null, arrays, nested fields, control characters), records and
 * problem printing. */
#include "testlib.h"

#include "../../services/admin/output.c"

#include <stdlib.h>

/* Runs fn into a memory stream and returns the text (caller frees). */
#define CAPTURE(text, call)                                                                        \
    do {                                                                                           \
        size_t cap_len_ = 0;                                                                       \
        FILE *f = open_memstream(&(text), &cap_len_);                                              \
        assert_non_null(f);                                                                        \
        call;                                                                                      \
        fclose(f);                                                                                 \
    } while (0)

static void test_table_alignment(void **state)
{
    static const admin_col cols[] = {{"ID", "id"}, {"NAME", "name"}, {"LIMIT", "limit"}};
    cJSON *rows = cJSON_Parse("[{\"id\":\"a1\",\"name\":\"demo-team\",\"limit\":1000000},"
                              "{\"id\":\"b22222\",\"name\":\"x\",\"limit\":null}]");
    char *text = NULL;

    assert_non_null(rows);
    CAPTURE(text, admin_table(f, cols, 3, rows));
    assert_string_equal(text, "ID      NAME       LIMIT\n"
                              "a1      demo-team  1000000\n"
                              "b22222  x          -\n");
    free(text);

    /* An empty list still prints the header. */
    cJSON *none = cJSON_CreateArray();
    CAPTURE(text, admin_table(f, cols, 3, none));
    assert_string_equal(text, "ID  NAME  LIMIT\n");
    free(text);
    cJSON_Delete(none);
    cJSON_Delete(rows);
}

static void test_table_utf8_and_controls(void **state)
{
    static const admin_col cols[] = {{"NAME", "name"}, {"N", "n"}};
    /* "Zürich" is 6 characters but 7 bytes; ESC must not reach the terminal. */
    cJSON *rows = cJSON_Parse("[{\"name\":\"Z\\u00fcrich\",\"n\":1},"
                              "{\"name\":\"evil\\u001b[31m\",\"n\":22}]");
    char *text = NULL;

    assert_non_null(rows);
    CAPTURE(text, admin_table(f, cols, 2, rows));
    assert_string_equal(text, "NAME       N\n"
                              "Z\xc3\xbcrich     1\n"
                              "evil?[31m  22\n");
    assert_null(strchr(text, '\x1b'));
    free(text);
    cJSON_Delete(rows);
}

static void test_cells(void **state)
{
    cJSON *o = cJSON_Parse(
        "{\"s\":\"x\",\"i\":42,\"big\":9007199254740991,\"f\":0.5,"
        "\"t\":true,\"n\":null,\"a\":[\"m1\",\"m2\"],\"e\":[],"
        "\"obj\":{\"id\":\"u1\",\"type\":\"user\"},\"nums\":[80,90],"
        "\"backends\":[{\"id\":\"b1\",\"url\":\"http://a:1\",\"weight\":1},"
        "{\"url\":\"http://b:2\"}],\"mixed\":[{\"x\":1},{\"name\":\"n1\",\"url\":\"u\"}]}");
    char *c;

    assert_non_null(o);
#define CELL(field, want)                                                                          \
    do {                                                                                           \
        c = admin_cell(o, field);                                                                  \
        assert_string_equal(c, want);                                                              \
        free(c);                                                                                   \
    } while (0)
    CELL("s", "x");
    CELL("i", "42");
    CELL("big", "9007199254740991");
    CELL("f", "0.5");
    CELL("t", "true");
    CELL("n", "-");
    CELL("missing", "-");
    CELL("a", "m1,m2");
    CELL("e", "-");
    CELL("nums", "80,90");
    CELL("obj.id", "u1");
    CELL("obj.type", "user");
    CELL("obj.nope", "-");
    CELL("s.deeper", "-");
    CELL("obj", "{\"id\":\"u1\",\"type\":\"user\"}");
    CELL("backends", "http://a:1,http://b:2");
    CELL("mixed", "{\"x\":1},n1");
#undef CELL
    cJSON_Delete(o);
}

static void test_record(void **state)
{
    static const admin_col cols[] = {{"ID", "id"}, {"NAME", "name"}};
    cJSON *o = cJSON_Parse("{\"name\":\"n\",\"id\":\"i\",\"description\":\"d\"}");
    char *text = NULL;

    CAPTURE(text, admin_record(f, cols, 2, o));
    /* Listed columns first, in order, then the remaining members. */
    assert_string_equal(text, "ID           i\n"
                              "NAME         n\n"
                              "description  d\n");
    free(text);
    cJSON_Delete(o);
}

static void test_list_items(void **state)
{
    cJSON *a = cJSON_Parse("{\"data\":[1,2],\"next_cursor\":null}");
    cJSON *b = cJSON_Parse("[3]");
    cJSON *c = cJSON_Parse("{\"x\":1}");

    assert_int_equal(cJSON_GetArraySize(admin_list_items(a)), 2);
    assert_ptr_equal(admin_list_items(b), b);
    assert_null(admin_list_items(c));
    assert_null(admin_list_items(NULL));
    cJSON_Delete(a);
    cJSON_Delete(b);
    cJSON_Delete(c);
}

static void test_problem(void **state)
{
    const char *p = "{\"type\":\"https://ias.dev/problems/conflict\",\"title\":\"Conflict\","
                    "\"status\":409,\"detail\":\"an org named demo-team exists\","
                    "\"request_id\":\"r-1\"}";
    char *text = NULL;

    CAPTURE(text, admin_print_problem(f, 409, p, strlen(p)));
    assert_string_equal(
        text, "error: Conflict (HTTP 409): an org named demo-team exists [request_id r-1]\n");
    free(text);

    const char *oai = "{\"error\":{\"message\":\"bad key\",\"type\":\"invalid_request_error\"}}";
    CAPTURE(text, admin_print_problem(f, 401, oai, strlen(oai)));
    assert_string_equal(text, "error: request failed (HTTP 401): bad key\n");
    free(text);

    const char *html = "<html>\x1b[2J bad gateway</html>";
    CAPTURE(text, admin_print_problem(f, 502, html, strlen(html)));
    assert_string_equal(text, "error: request failed (HTTP 502): <html>?[2J bad gateway</html>\n");
    free(text);

    CAPTURE(text, admin_print_problem(f, 500, NULL, 0));
    assert_string_equal(text, "error: request failed (HTTP 500)\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_alignment), cmocka_unit_test(test_table_utf8_and_controls),
        cmocka_unit_test(test_cells),           cmocka_unit_test(test_record),
        cmocka_unit_test(test_list_items),      cmocka_unit_test(test_problem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
