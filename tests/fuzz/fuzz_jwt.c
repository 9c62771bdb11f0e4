/* Fuzz JWT verification with a fixed secret. Random input must never verify
 * (it would need a valid HMAC); seeds signed with the secret do, and mutations
 * of them exercise the claim checks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ias/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The corpus seeds in tests/fuzz/corpus/jwt are signed with this secret. */
static const char secret[] = "fuzz-secret-0123456789abcdef0123456789";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ias_jwt_claims c;
    char *tok = malloc(size + 1);

    if (tok == NULL)
        return 0;
    memcpy(tok, data, size);
    tok[size] = '\0';
    ias_jwt_result r = ias_jwt_verify(secret, sizeof(secret) - 1, tok, "access", 1800000000, &c);
    if (r == IAS_JWT_OK) {
        if (c.sub[0] == '\0' || strcmp(c.typ, "access") != 0 || c.exp <= c.iat ||
            strnlen(c.org, sizeof(c.org)) == sizeof(c.org) ||
            strnlen(c.role, sizeof(c.role)) == sizeof(c.role) ||
            strnlen(c.jti, sizeof(c.jti)) == sizeof(c.jti))
            abort();
    } else if (r < IAS_JWT_OK || r > IAS_JWT_ESECRET || c.sub[0] != '\0') {
        abort();
    }
    free(tok);
    return 0;
}
