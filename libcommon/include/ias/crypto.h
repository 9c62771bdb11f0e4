/* Small cryptographic primitives over OpenSSL: randomness, UUIDs, base64url,
 * hex, SHA-256, HMAC-SHA256 and constant-time comparison.
 *
 * Everything here is thread-safe and keeps no state. Digest and UUID
 * functions only fail when OpenSSL itself is broken (allocation failure or a
 * dead CSPRNG); they treat that as the third tier of failure and die rather
 * than hand back a weak or missing value. */
#ifndef IAS_CRYPTO_H
#define IAS_CRYPTO_H

#include <stdint.h>
#include <sys/types.h>

#include "ias/common.h"

#define IAS_SHA256_LEN 32
#define IAS_SHA256_HEX_LEN 64 /* characters, the buffer needs one more */
#define IAS_UUID_STR_LEN 36   /* characters, the buffer needs one more */

/* Fills buf with len bytes from the OpenSSL CSPRNG. IAS_OK or IAS_ERR. */
int ias_random_bytes(void *buf, size_t len) IAS_MUSTCHECK;

/* Random (v4) and time-ordered (v7, RFC 9562) UUIDs, lowercase, NUL-terminated.
 * v7 carries the Unix time in milliseconds in its first 48 bits and a 12-bit
 * sub-millisecond fraction after the version, so ids made by one host sort by
 * creation time (to ~250 ns) without any shared counter; the rest is random.
 * Use v7 for primary keys and event ids (index-friendly), v4 where the order
 * must not leak. */
void ias_uuid_v4(char out[IAS_UUID_STR_LEN + 1]);
void ias_uuid_v7(char out[IAS_UUID_STR_LEN + 1]);

/* NOT cryptographic: a per-thread xoshiro256** generator seeded once per thread
 * from the CSPRNG (no lock, no syscall, none of RAND_bytes' per-call fork
 * checks). Only for identifiers that must be unique and unguessable enough for
 * correlation but guard nothing: request ids, trace and span ids. Never for
 * keys, tokens, secrets or anything an attacker gains by predicting. A process
 * that forks must not use it in the child before exec (the state is copied). */
void ias_fast_random(void *buf, size_t len);
/* A v4 UUID from ias_fast_random (request ids, reservation ids). */
void ias_uuid_v4_fast(char out[IAS_UUID_STR_LEN + 1]);
/* A v7 UUID whose random bits come from ias_fast_random (event ids: unique and
 * time-ordered, guarding nothing). */
void ias_uuid_v7_fast(char out[IAS_UUID_STR_LEN + 1]);
/* True for the canonical 8-4-4-4-12 hex form (either case), any version.
 * Reads at most 37 bytes of str. */
bool ias_uuid_valid(const char *str);

/* base64url (RFC 4648 §5) without padding. */
/* Characters needed for n input bytes (without the NUL). */
size_t ias_b64url_encoded_len(size_t n);
/* Upper bound of bytes decoded from n characters. */
size_t ias_b64url_decoded_max(size_t n);
/* Writes the encoding and a NUL into out; returns the length without the NUL,
 * or IAS_ERR when outlen < ias_b64url_encoded_len(inlen) + 1. */
ssize_t ias_b64url_encode(const void *in, size_t inlen, char *out, size_t outlen) IAS_MUSTCHECK;
/* Decodes exactly inlen characters. Rejects (IAS_ERR) any character outside
 * [A-Za-z0-9_-] (including '=' padding and whitespace), a length of 4k+1,
 * non-zero unused trailing bits (so every byte string has one encoding), and
 * output that would not fit in outcap. Returns the number of bytes written. */
ssize_t ias_b64url_decode(const char *in, size_t inlen, void *out, size_t outcap) IAS_MUSTCHECK;

/* Lowercase hex with a NUL; returns 2*inlen or IAS_ERR if outlen < 2*inlen+1. */
ssize_t ias_hex_encode(const void *in, size_t inlen, char *out, size_t outlen) IAS_MUSTCHECK;
/* Decodes exactly inlen hex characters (either case); returns bytes written or
 * IAS_ERR (odd length, non-hex character, outcap too small). */
ssize_t ias_hex_decode(const char *in, size_t inlen, void *out, size_t outcap) IAS_MUSTCHECK;

void ias_sha256(const void *data, size_t len, uint8_t out[IAS_SHA256_LEN]);
void ias_sha256_hex(const void *data, size_t len, char out[IAS_SHA256_HEX_LEN + 1]);
void ias_hmac_sha256(const void *key, size_t keylen, const void *data, size_t len,
                     uint8_t out[IAS_SHA256_LEN]);

/* Constant-time equality of two buffers of the same length (CRYPTO_memcmp):
 * the time depends on len only, never on where the buffers differ. */
bool ias_ct_equal(const void *a, const void *b, size_t len);

#endif
