#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

const char *ias_test_env(const char *name)
{
    const char *v = getenv(name);
    return (v && *v) ? v : NULL;
}

int ias_test_stack(const char *args)
{
    const char *ctl = ias_test_env("IAS_STACK_CTL");
    char cmd[1024];
    int rc;

    if (!ctl) {
        fprintf(stderr, "IAS_STACK_CTL is not set (run through scripts/test.sh)\n");
        return -1;
    }
    if ((size_t)snprintf(cmd, sizeof(cmd), "%s %s", ctl, args) >= sizeof(cmd))
        return -1;
    rc = system(cmd);
    if (rc == -1 || !WIFEXITED(rc))
        return -1;
    return WEXITSTATUS(rc);
}

void ias_test_unique(const char *prefix, char *buf, size_t len)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(buf, len, "%s_%ld_%ld_%ld", prefix, (long)getpid(), (long)ts.tv_sec, (long)ts.tv_nsec);
}

const char *ias_test_repo_root(void)
{
    const char *r = ias_test_env("IAS_REPO_ROOT");
    return r ? r : ".";
}

int ias_test_http(int port, const char *method, const char *path, const char *headers,
                  const char *body, char *out, size_t outlen)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    char req[16384];
    size_t got = 0, blen = body ? strlen(body) : 0;
    int fd, n, status = -1;

    if (outlen == 0)
        return -1;
    out[0] = '\0';
    n = snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%sContent-Length: "
                 "%zu\r\n\r\n%s",
                 method, path, headers ? headers : "", blen, body ? body : "");
    if (n < 0 || (size_t)n >= sizeof(req))
        return -1;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || write(fd, req, (size_t)n) != n) {
        close(fd);
        return -1;
    }
    while (got + 1 < outlen) {
        ssize_t r = read(fd, out + got, outlen - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    out[got] = '\0';
    close(fd);
    if (sscanf(out, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}
