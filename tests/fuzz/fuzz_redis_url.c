/* Fuzzes the redis:// URL parser: no crash, bounded output, and what it accepts
 * survives a redact/parse round trip. */
#include "ias/redis.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *url, err[128], buf[IAS_REDIS_URL_MAX + 64];
    ias_redis_url u, again;

    if (size > 2 * IAS_REDIS_URL_MAX)
        return 0;
    url = malloc(size + 1);
    if (!url)
        return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    if (ias_redis_url_parse(url, &u, err, sizeof(err)) == IAS_OK) {
        if (!u.host[0] || u.port < 1 || u.port > 65535 || u.db < 0 || u.db > IAS_REDIS_DB_MAX)
            abort();
        if (strlen(u.host) >= sizeof(u.host) || strlen(u.password) >= sizeof(u.password))
            abort();
        ias_redis_url_redact(&u, buf, sizeof(buf));
        if (strstr(buf, "***") == NULL && u.password[0])
            abort();
        /* Without credentials the redacted form is itself a valid URL. */
        if (!u.password[0]) {
            if (ias_redis_url_parse(buf, &again, err, sizeof(err)) != IAS_OK)
                abort();
            if (strcmp(again.host, u.host) != 0 || again.port != u.port || again.db != u.db)
                abort();
        }
    } else if (!strstr(err, "invalid redis URL")) {
        abort();
    }
    free(url);
    return 0;
}
