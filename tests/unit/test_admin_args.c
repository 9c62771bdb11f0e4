/* ias-admin argument parsing: flags in every spelling, globals anywhere,
 * required flags, positional counts, and the usage text. The parser is
 * compiled in directly (the CLI is a binary, not a library). */
#include "testlib.h"

#include "../../services/admin/args.c"

#include <stdlib.h>

static int run_nothing(admin_ctx *ctx, const admin_parsed *a)
{
    IAS_UNUSED(ctx);
    IAS_UNUSED(a);
    return 0;
}

static const admin_flag flags[] = {
    {"email", 0, true, true, "EMAIL", "the email"},
    {"file", 'f', true, false, "FILE", "a file"},
    {"password-stdin", 0, false, false, NULL, "read stdin"},
};

static const admin_cmd cmd = {"create", "create a thing",     "NAME",     1, 2,
                              flags,    IAS_ARRAY_LEN(flags), run_nothing};
static const admin_cmd bare = {"list", "list things", NULL, 0, 0, NULL, 0, run_nothing};
static const admin_group group = {"things", "manage things", &cmd, 1};
static const admin_group other = {"stuff", "manage stuff", &bare, 1};

static int parse(const admin_cmd *c, admin_parsed *out, char *err, size_t len, int argc, ...)
{
    char *argv[16];
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++)
        argv[i] = va_arg(ap, char *);
    va_end(ap);
    memset(out, 0, sizeof(*out));
    err[0] = '\0';
    return admin_parse(c, argc, argv, out, err, len);
}

static void test_flag_spellings(void **state)
{
    admin_parsed a;
    char err[128];

    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "--email", "a@b.c", "-f", "x.json"),
                     IAS_ERR); /* NAME missing */
    assert_string_equal(err, "missing argument NAME");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 5, "n1", "--email=a@b.c", "-f", "x.json",
                           "--password-stdin"),
                     IAS_OK);
    assert_string_equal(admin_flag_value(&a, "email"), "a@b.c");
    assert_string_equal(admin_flag_value(&a, "file"), "x.json");
    assert_true(admin_flag_set(&a, "password-stdin"));
    assert_int_equal(a.npos, 1);
    assert_string_equal(a.pos[0], "n1");
    assert_null(admin_flag_value(&a, "nonexistent"));

    /* A value may start with a dash and be empty. */
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "--email", "-x", "--file=", "n"), IAS_OK);
    assert_string_equal(admin_flag_value(&a, "email"), "-x");
    assert_string_equal(admin_flag_value(&a, "file"), "");

    /* "--" ends the flags; "-" alone is a positional (stdin). */
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "--email", "e", "--", "--weird"), IAS_OK);
    assert_string_equal(a.pos[0], "--weird");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 3, "--email", "e", "-"), IAS_OK);
    assert_string_equal(a.pos[0], "-");
}

static void test_errors(void **state)
{
    admin_parsed a;
    char err[128];

    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "n", "--email", "e", "--nope"), IAS_ERR);
    assert_string_equal(err, "unknown flag --nope");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 2, "n", "--email"), IAS_ERR);
    assert_string_equal(err, "flag --email needs a value");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 1, "n"), IAS_ERR);
    assert_string_equal(err, "missing required flag --email");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "n", "--email", "e", "-z"), IAS_ERR);
    assert_string_equal(err, "unknown flag -z");
    assert_int_equal(
        parse(&cmd, &a, err, sizeof(err), 4, "n", "--email=e", "--password-stdin=yes", "x"),
        IAS_ERR);
    assert_string_equal(err, "flag --password-stdin takes no value");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 4, "n1", "n2", "n3", "--email=e"), IAS_ERR);
    assert_string_equal(err, "unexpected argument 'n3'");
    assert_int_equal(parse(&bare, &a, err, sizeof(err), 1, "extra"), IAS_ERR);
    assert_string_equal(err, "unexpected argument 'extra'");
    /* A long flag's prefix is not the flag. */
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 3, "n", "--em", "e"), IAS_ERR);
}

static void test_globals_anywhere(void **state)
{
    admin_parsed a;
    char err[128];

    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 7, "-o", "json", "n", "--email", "e",
                           "--base-url", "http://x:1"),
                     IAS_OK);
    assert_string_equal(a.output, "json");
    assert_string_equal(a.base_url, "http://x:1");
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 3, "--output=table", "--base-url=u", "n"),
                     IAS_ERR); /* --email still required */
    assert_string_equal(a.output, "table");
    /* --help skips the required checks. */
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 1, "--help"), IAS_OK);
    assert_true(a.help);
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 1, "-h"), IAS_OK);
    assert_true(a.help);
    assert_int_equal(parse(&cmd, &a, err, sizeof(err), 1, "--output"), IAS_ERR);
    assert_string_equal(err, "flag --output needs a value");

    /* Before the command word. */
    char *argv[] = {"ias-admin", "--output", "json", "-h", "orgs", "list"};
    int i = 1;
    memset(&a, 0, sizeof(a));
    assert_int_equal(admin_parse_globals(6, argv, &i, &a, err, sizeof(err)), IAS_OK);
    assert_int_equal(i, 4);
    assert_string_equal(a.output, "json");
    assert_true(a.help);
    char *bad[] = {"ias-admin", "--verbose", "orgs"};
    i = 1;
    assert_int_equal(admin_parse_globals(3, bad, &i, &a, err, sizeof(err)), IAS_ERR);
    assert_string_equal(err, "unknown flag --verbose");
}

static void test_lookup_and_usage(void **state)
{
    const admin_group *const groups[] = {&group, &other};
    char *text = NULL;
    size_t len = 0;

    assert_ptr_equal(admin_group_find(groups, 2, "stuff"), &other);
    assert_null(admin_group_find(groups, 2, "stuf"));
    assert_ptr_equal(admin_cmd_find(&group, "create"), &cmd);
    assert_null(admin_cmd_find(&group, "list"));

    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    admin_usage_cmd(f, &group, &cmd);
    fclose(f);
    assert_non_null(strstr(text, "ias-admin things create NAME --email EMAIL [flags]"));
    assert_non_null(strstr(text, "-f, --file FILE"));
    assert_non_null(strstr(text, "(required)"));
    assert_non_null(strstr(text, "--output table|json"));
    free(text);

    f = open_memstream(&text, &len);
    assert_non_null(f);
    admin_usage_root(f, groups, 2);
    fclose(f);
    assert_non_null(strstr(text, "things"));
    assert_non_null(strstr(text, "manage stuff"));
    assert_non_null(strstr(text, "Exit codes"));
    free(text);
}

static void test_values(void **state)
{
    uint64_t v = 7;

    assert_true(admin_is_uuid("0b6c3c1e-7a55-4b59-9d2e-1f7f3c1d2e3f"));
    assert_true(admin_is_uuid("0B6C3C1E-7A55-4B59-9D2E-1F7F3C1D2E3F"));
    assert_false(admin_is_uuid("0b6c3c1e-7a55-4b59-9d2e-1f7f3c1d2e3"));
    assert_false(admin_is_uuid("0b6c3c1e07a55-4b59-9d2e-1f7f3c1d2e3f"));
    assert_false(admin_is_uuid("demo-team"));
    assert_false(admin_is_uuid(NULL));
    assert_int_equal(admin_parse_u64("1000000", &v), IAS_OK);
    assert_int_equal(v, 1000000);
    assert_int_equal(admin_parse_u64("0", &v), IAS_OK);
    assert_int_equal(v, 0);
    assert_int_equal(admin_parse_u64("-1", &v), IAS_ERR);
    assert_int_equal(admin_parse_u64("12x", &v), IAS_ERR);
    assert_int_equal(admin_parse_u64("", &v), IAS_ERR);
    assert_int_equal(admin_parse_u64(" 1", &v), IAS_ERR);
    assert_int_equal(admin_parse_u64("99999999999999999999999", &v), IAS_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flag_spellings),   cmocka_unit_test(test_errors),
        cmocka_unit_test(test_globals_anywhere), cmocka_unit_test(test_lookup_and_usage),
        cmocka_unit_test(test_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
