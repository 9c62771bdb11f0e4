/* Helpers shared by unit and integration tests (linked into every test binary). */
#ifndef IAS_TESTLIB_H
#define IAS_TESTLIB_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

/* Value of an environment variable the integration suite sets (IAS_PG_DSN,
 * IAS_REDIS_URL, IAS_AMQP_URL, IAS_STACK_CTL, ...), or NULL. */
const char *ias_test_env(const char *name);
/* Runs "$IAS_STACK_CTL <args>" (scripts/stack.sh bound to the test stack), e.g.
 * ias_test_stack("restart postgres"). Returns the exit status. */
int ias_test_stack(const char *args);
/* A fresh unique name with a prefix, for queues, keys and databases in tests. */
void ias_test_unique(const char *prefix, char *buf, size_t len);
/* Path of the repository root (from IAS_REPO_ROOT or the current directory). */
const char *ias_test_repo_root(void);

/* One blocking HTTP/1.1 exchange with 127.0.0.1:port ("Connection: close" is
 * added): sends method, path, extra header lines (each ending in \r\n, may be
 * NULL) and body (may be NULL); writes the whole response (head and body) into
 * out, NUL-terminated. Returns the status code or -1. */
int ias_test_http(int port, const char *method, const char *path, const char *headers,
                  const char *body, char *out, size_t outlen);

#endif
