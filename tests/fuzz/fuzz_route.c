/* Route matcher: "<METHOD> <path>" against a fixed table with parameters. */
#include "ias/http_server.h"

#include <stdlib.h>
#include <string.h>

static void h(ias_req *r, void *ctx) {}

static const ias_route routes[] = {
    {"GET", "/", h},
    {"GET", "/health", h},
    {"GET", "/api/v1/orgs", h},
    {"POST", "/api/v1/orgs", h},
    {"GET", "/api/v1/orgs/{id}", h},
    {"PATCH", "/api/v1/orgs/{id}", h},
    {"DELETE", "/api/v1/orgs/{id}/users/{user_id}", h},
    {"GET", "/api/v1/users/me", h},
    {"GET", "/api/v1/users/{id}", h},
    {"POST", "/v1/chat/completions", h},
    {"GET", "/v1/models/{model}", h},
    {"GET", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", h},
    {"PUT", "/files/{*rest}", h},
    {"GET", "/files/{*rest}", h},
};
#define NROUTES (sizeof(routes) / sizeof(routes[0]))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = malloc(size + 1);
    char *path;
    const char *method;
    ias_route_match m;
    char allow[128];
    int rc;

    if (!in)
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    path = strchr(in, ' ');
    if (path) {
        *path++ = '\0';
        method = in;
    } else {
        method = "GET";
        path = in;
    }

    rc = ias_route_find(routes, NROUTES, method, path, &m);
    if (rc != m.route || rc < -2 || rc >= (int)NROUTES)
        abort();
    if (m.nparams > IAS_ROUTE_MAX_PARAMS)
        abort();
    for (size_t i = 0; i < m.nparams; i++) {
        const char *pat = routes[rc].pattern;

        if (rc < 0 ||
            strnlen(m.params[i].value, sizeof(m.params[i].value)) >= sizeof(m.params[i].value))
            abort();
        if (m.params[i].name < pat || m.params[i].name + m.params[i].name_len > pat + strlen(pat))
            abort();
    }
    if (ias_route_allow(routes, NROUTES, path, allow, sizeof(allow)) != IAS_OK)
        abort();
    if (rc == -2 && allow[0] == '\0')
        abort(); /* the path matched some route */
    if (rc == -1 && allow[0] != '\0')
        abort(); /* no route has this path */
    if (rc >= 0) {
        if (strcmp(routes[rc].method, method) != 0 &&
            !(strcmp(method, "HEAD") == 0 && strcmp(routes[rc].method, "GET") == 0))
            abort();
        if (!strstr(allow, routes[rc].method))
            abort();
    }
    free(in);
    return 0;
}
