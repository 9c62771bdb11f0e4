#include "testlib.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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
