/* The credentials file: JSON with one profile per base URL, so a token is only
 * ever sent to the server that issued it, and "current" naming the base URL
 * of the last login:
 *   {"current":"http://...","profiles":{"http://...":{"email":..,
 *    "access_token":..,"refresh_token":..,"expires_at":<unix s>}}}
 * Written to a temporary file with mode 0600 and renamed over the old one, so
 * a crash never leaves a half-written or world-readable file. */
#include "admin.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CREDS_FILE_MAX (1u << 20)

int admin_creds_path(char *buf, size_t len)
{
    const char *dir = getenv("IAS_CONFIG_DIR");
    const char *xdg = getenv("XDG_CONFIG_HOME");
    const char *home = getenv("HOME");
    int n;

    if (dir && dir[0])
        n = snprintf(buf, len, "%s/credentials", dir);
    else if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/ias/credentials", xdg);
    else if (home && home[0])
        n = snprintf(buf, len, "%s/.config/ias/credentials", home);
    else
        return IAS_ERR;
    return n > 0 && (size_t)n < len ? IAS_OK : IAS_ERR;
}

/* Reads the whole file; IAS_AGAIN when it does not exist. */
static int read_file(const char *path, char **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat st;

    if (fd < 0) {
        if (errno == ENOENT)
            return IAS_AGAIN;
        fprintf(stderr, "ias-admin: cannot open %s: %s\n", path, strerror(errno));
        return IAS_ERR;
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)CREDS_FILE_MAX) {
        fprintf(stderr, "ias-admin: %s is not a regular file under 1 MiB\n", path);
        close(fd);
        return IAS_ERR;
    }
    if ((st.st_mode & 077) != 0)
        fprintf(stderr, "ias-admin: warning: %s is readable by others; run chmod 600 %s\n", path,
                path);
    char *buf = ias_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *out = buf;
    return IAS_OK;
}

/* The parsed file, or a fresh skeleton when it does not exist. NULL on error. */
static cJSON *load_doc(const char *path)
{
    char *text = NULL;
    int rc = read_file(path, &text);
    cJSON *doc;

    if (rc == IAS_ERR)
        return NULL;
    if (rc == IAS_AGAIN) {
        doc = cJSON_CreateObject();
    } else {
        doc = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(doc)) {
            cJSON_Delete(doc);
            fprintf(stderr, "ias-admin: %s is not valid JSON; remove it and log in again\n", path);
            return NULL;
        }
    }
    if (!cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(doc, "profiles"))) {
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "profiles");
        cJSON_AddItemToObject(doc, "profiles", cJSON_CreateObject());
    }
    return doc;
}

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int admin_creds_load(const char *path, const char *base_url, admin_creds *c)
{
    char *text = NULL;
    int rc = read_file(path, &text);

    memset(c, 0, sizeof(*c));
    if (rc != IAS_OK)
        return rc;
    cJSON *doc = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(doc)) {
        cJSON_Delete(doc);
        fprintf(stderr, "ias-admin: %s is not valid JSON; remove it and log in again\n", path);
        return IAS_ERR;
    }
    if (!base_url)
        base_url = str_of(doc, "current");
    const cJSON *profiles = cJSON_GetObjectItemCaseSensitive(doc, "profiles");
    const cJSON *p = base_url && cJSON_IsObject(profiles)
                         ? cJSON_GetObjectItemCaseSensitive(profiles, base_url)
                         : NULL;
    if (!cJSON_IsObject(p)) {
        cJSON_Delete(doc);
        return IAS_AGAIN;
    }
    const char *email = str_of(p, "email");
    const char *at = str_of(p, "access_token");
    const char *rt = str_of(p, "refresh_token");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(p, "expires_at");
    if (ias_strlcpy(c->base_url, base_url, sizeof(c->base_url)) != IAS_OK ||
        ias_strlcpy(c->email, email ? email : "", sizeof(c->email)) != IAS_OK) {
        cJSON_Delete(doc);
        fprintf(stderr, "ias-admin: %s: profile too long\n", path);
        return IAS_ERR;
    }
    c->access_token = at && at[0] ? ias_xstrdup(at) : NULL;
    c->refresh_token = rt && rt[0] ? ias_xstrdup(rt) : NULL;
    c->expires_at = cJSON_IsNumber(exp) ? (int64_t)exp->valuedouble : 0;
    cJSON_Delete(doc);
    return IAS_OK;
}

static int mkdir_parents(const char *path)
{
    char dir[1024];
    if (ias_strlcpy(dir, path, sizeof(dir)) != IAS_OK)
        return IAS_ERR;
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return IAS_OK;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return IAS_ERR;
        *p = '/';
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return IAS_ERR;
    return IAS_OK;
}

static int write_doc(const char *path, const cJSON *doc)
{
    char tmp[1100];
    char *text = cJSON_Print(doc);
    int fd = -1;
    int rc = IAS_ERR;

    if (!text)
        return IAS_ERR;
    if (mkdir_parents(path) != IAS_OK) {
        fprintf(stderr, "ias-admin: cannot create the directory of %s: %s\n", path,
                strerror(errno));
        goto fail;
    }
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid());
    if (n < 0 || (size_t)n >= sizeof(tmp))
        goto fail;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "ias-admin: cannot write %s: %s\n", tmp, strerror(errno));
        goto fail;
    }
    /* The umask cannot widen 0600, but an existing tmp file could be wider. */
    if (fchmod(fd, 0600) != 0)
        goto fail_unlink;
    size_t len = strlen(text), done = 0;
    while (done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            goto fail_unlink;
        done += (size_t)w;
    }
    if (write(fd, "\n", 1) != 1 || fsync(fd) != 0)
        goto fail_unlink;
    if (close(fd) != 0) {
        fd = -1;
        goto fail_unlink;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto fail_unlink;
    rc = IAS_OK;
    goto fail;
fail_unlink:
    fprintf(stderr, "ias-admin: cannot write %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
fail:
    if (fd >= 0)
        close(fd);
    cJSON_free(text);
    return rc;
}

int admin_creds_save(const char *path, const admin_creds *c)
{
    cJSON *doc = load_doc(path);
    if (!doc)
        return IAS_ERR;
    cJSON *profiles = cJSON_GetObjectItemCaseSensitive(doc, "profiles");
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "email", c->email);
    cJSON_AddStringToObject(p, "access_token", c->access_token ? c->access_token : "");
    cJSON_AddStringToObject(p, "refresh_token", c->refresh_token ? c->refresh_token : "");
    cJSON_AddNumberToObject(p, "expires_at", (double)c->expires_at);
    cJSON_DeleteItemFromObjectCaseSensitive(profiles, c->base_url);
    cJSON_AddItemToObject(profiles, c->base_url, p);
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "current");
    cJSON_AddStringToObject(doc, "current", c->base_url);
    int rc = write_doc(path, doc);
    cJSON_Delete(doc);
    return rc;
}

int admin_creds_forget(const char *path, const char *base_url)
{
    cJSON *doc = load_doc(path);
    if (!doc)
        return IAS_ERR;
    cJSON *profiles = cJSON_GetObjectItemCaseSensitive(doc, "profiles");
    cJSON_DeleteItemFromObjectCaseSensitive(profiles, base_url);
    const char *cur = str_of(doc, "current");
    if (cur && strcmp(cur, base_url) == 0)
        cJSON_DeleteItemFromObjectCaseSensitive(doc, "current");
    int rc = write_doc(path, doc);
    cJSON_Delete(doc);
    return rc;
}

static void wipe_free(char *s)
{
    if (!s)
        return;
    /* volatile so the compiler keeps the wipe of a buffer about to be freed. */
    for (volatile char *p = s; *p; p++)
        *p = '\0';
    free(s);
}

void admin_creds_clear(admin_creds *c)
{
    wipe_free(c->access_token);
    wipe_free(c->refresh_token);
    c->access_token = NULL;
    c->refresh_token = NULL;
}
