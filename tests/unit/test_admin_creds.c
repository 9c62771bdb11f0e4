/* ias-admin credentials file: path resolution (IAS_CONFIG_DIR, XDG, HOME),
 * mode 0600 in a 0700 directory whatever the umask, one profile per base URL,
 * "current" profile, forgetting, and refusing a broken file. */
#include "testlib.h"

#include "../../services/admin/creds.c"

#include <stdlib.h>
#include <sys/stat.h>

static char dir[256];

static int setup(void **state)
{
    char tmpl[] = "/tmp/ias_admin_creds_XXXXXX";
    assert_non_null(mkdtemp(tmpl));
    snprintf(dir, sizeof(dir), "%s", tmpl);
    return 0;
}

static int teardown(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_path(void **state)
{
    char p[512];

    setenv("IAS_CONFIG_DIR", "/cfg", 1);
    setenv("XDG_CONFIG_HOME", "/xdg", 1);
    setenv("HOME", "/home/op", 1);
    assert_int_equal(admin_creds_path(p, sizeof(p)), IAS_OK);
    assert_string_equal(p, "/cfg/credentials");
    unsetenv("IAS_CONFIG_DIR");
    assert_int_equal(admin_creds_path(p, sizeof(p)), IAS_OK);
    assert_string_equal(p, "/xdg/ias/credentials");
    /* The XDG spec ignores relative paths. */
    setenv("XDG_CONFIG_HOME", "rel", 1);
    assert_int_equal(admin_creds_path(p, sizeof(p)), IAS_OK);
    assert_string_equal(p, "/home/op/.config/ias/credentials");
    unsetenv("XDG_CONFIG_HOME");
    unsetenv("HOME");
    assert_int_equal(admin_creds_path(p, sizeof(p)), IAS_ERR);
    setenv("IAS_CONFIG_DIR", "/x", 1);
    assert_int_equal(admin_creds_path(p, 8), IAS_ERR); /* truncated */
    unsetenv("IAS_CONFIG_DIR");
}

static void test_save_mode_and_profiles(void **state)
{
    char path[512];
    struct stat st;
    admin_creds c, got;

    snprintf(path, sizeof(path), "%s/nested/ias/credentials", dir);
    assert_int_equal(admin_creds_load(path, NULL, &got), IAS_AGAIN);

    memset(&c, 0, sizeof(c));
    snprintf(c.base_url, sizeof(c.base_url), "http://a:8080");
    snprintf(c.email, sizeof(c.email), "root@example.com");
    c.access_token = ias_xstrdup("access-A");
    c.refresh_token = ias_xstrdup("refresh-A");
    c.expires_at = 1900000000;
    mode_t old = umask(0); /* even a careless umask must not widen the file */
    assert_int_equal(admin_creds_save(path, &c), IAS_OK);
    umask(old);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char d[512];
    snprintf(d, sizeof(d), "%s/nested/ias", dir);
    assert_int_equal(stat(d, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    /* A second server gets its own profile and becomes current. */
    admin_creds_clear(&c);
    snprintf(c.base_url, sizeof(c.base_url), "http://b:9090");
    c.access_token = ias_xstrdup("access-B");
    c.refresh_token = NULL;
    c.expires_at = 0;
    assert_int_equal(admin_creds_save(path, &c), IAS_OK);
    admin_creds_clear(&c);

    assert_int_equal(admin_creds_load(path, NULL, &got), IAS_OK);
    assert_string_equal(got.base_url, "http://b:9090");
    assert_string_equal(got.access_token, "access-B");
    assert_null(got.refresh_token);
    admin_creds_clear(&got);

    assert_int_equal(admin_creds_load(path, "http://a:8080", &got), IAS_OK);
    assert_string_equal(got.email, "root@example.com");
    assert_string_equal(got.access_token, "access-A");
    assert_string_equal(got.refresh_token, "refresh-A");
    assert_int_equal(got.expires_at, 1900000000);
    admin_creds_clear(&got);
    assert_null(got.access_token);

    /* A token is never offered to a server that did not issue it. */
    assert_int_equal(admin_creds_load(path, "http://c:1", &got), IAS_AGAIN);

    assert_int_equal(admin_creds_forget(path, "http://b:9090"), IAS_OK);
    assert_int_equal(admin_creds_load(path, "http://b:9090", &got), IAS_AGAIN);
    assert_int_equal(admin_creds_load(path, NULL, &got), IAS_AGAIN); /* no current now */
    assert_int_equal(admin_creds_load(path, "http://a:8080", &got), IAS_OK);
    admin_creds_clear(&got);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_broken_file(void **state)
{
    char path[512];
    admin_creds got;
    admin_creds c;

    snprintf(path, sizeof(path), "%s/credentials", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{not json", f);
    fclose(f);
    assert_int_equal(admin_creds_load(path, NULL, &got), IAS_ERR);
    memset(&c, 0, sizeof(c));
    snprintf(c.base_url, sizeof(c.base_url), "http://a");
    /* Saving over a broken file refuses rather than silently dropping profiles. */
    assert_int_equal(admin_creds_save(path, &c), IAS_ERR);
    /* A directory where the file should be is an error, not a crash. */
    snprintf(path, sizeof(path), "%s/dir", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(admin_creds_load(path, NULL, &got), IAS_ERR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_path),
        cmocka_unit_test_setup_teardown(test_save_mode_and_profiles, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broken_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
