/* Fuzz the API key parser and the Authorization header extractor. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ias/apikey.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char key[IAS_APIKEY_BUFSZ], prefix[IAS_APIKEY_PREFIX_BUFSZ], hex[IAS_APIKEY_HASH_BUFSZ];
    char *s = malloc(size + 1);

    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    if (ias_apikey_parse(s, prefix) == IAS_OK) {
        /* Anything accepted has the exact shape and hashes/verifies. */
        if (strlen(s) != IAS_APIKEY_LEN || strlen(prefix) != IAS_APIKEY_PREFIX_LEN ||
            memcmp(s + 4, prefix, IAS_APIKEY_PREFIX_LEN) != 0)
            abort();
        ias_apikey_hash(s, hex);
        if (!ias_apikey_verify(s, hex))
            abort();
    }
    if (ias_apikey_from_bearer(s, key, prefix) == IAS_OK) {
        if (strlen(key) != IAS_APIKEY_LEN || strcmp(key, s + 7) != 0 ||
            ias_apikey_parse(key, NULL) != IAS_OK)
            abort();
    }
    /* Treat the input as a stored digest too. */
    (void)ias_apikey_verify("ias_ab12cd34.AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", s);
    free(s);
    return 0;
}
