/* Fuzz the strict base64url decoder: whatever it accepts must re-encode to the
 * exact same text (one canonical encoding per byte string). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ias/crypto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t cap = ias_b64url_decoded_max(size);
    uint8_t *dec = malloc(cap + 1);
    char *enc = NULL;
    ssize_t n, e;

    if (dec == NULL)
        return 0;
    /* Exact-size output buffer, so ASan sees any overrun. */
    n = ias_b64url_decode((const char *)data, size, dec, cap);
    if (n >= 0) {
        if ((size_t)n > cap || ias_b64url_encoded_len((size_t)n) != size)
            abort();
        enc = malloc(size + 1);
        if (enc == NULL)
            goto done;
        e = ias_b64url_encode(dec, (size_t)n, enc, size + 1);
        if (e != (ssize_t)size || memcmp(enc, data, size) != 0)
            abort();
    }
    /* One byte short of room must fail cleanly, never overflow. */
    if (cap > 0 && n > 0 && (size_t)n == cap &&
        ias_b64url_decode((const char *)data, size, dec, cap - 1) != IAS_ERR)
        abort();
    /* Hex decoder on the same bytes. */
    (void)ias_hex_decode((const char *)data, size, dec, cap);
done:
    free(enc);
    free(dec);
    return 0;
}
