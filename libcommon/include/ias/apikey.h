/* API keys: "ias_<prefix>.<secret>" (DESIGN.md, Security).
 *
 *   prefix  8 characters of [a-z0-9], random (not derived from the secret, so
 *           it can be stored, shown and logged without revealing anything). It
 *           identifies a key in listings; lookups go by the hash, since 36^8
 *           prefixes may collide across millions of keys.
 *   secret  32 random bytes, base64url without padding: 43 characters, the
 *           last one canonical (its 4 unused bits zero).
 *
 * A whole key is 56 characters, e.g.
 *   ias_k3x9q0ab.Zb3X2l1x0tY5bTQ0p9K2fVtJ6o7mCq3v1u8nW4sR5gA
 * The server stores the prefix and ias_apikey_hash() of the whole key; the key
 * itself is shown once. */
#ifndef IAS_APIKEY_H
#define IAS_APIKEY_H

#include "ias/common.h"
#include "ias/crypto.h"

#define IAS_APIKEY_PREFIX_LEN 8
#define IAS_APIKEY_SECRET_BYTES 32
#define IAS_APIKEY_SECRET_LEN 43                                               /* base64url chars */
#define IAS_APIKEY_LEN (4 + IAS_APIKEY_PREFIX_LEN + 1 + IAS_APIKEY_SECRET_LEN) /* 56 */
#define IAS_APIKEY_BUFSZ (IAS_APIKEY_LEN + 1)
#define IAS_APIKEY_PREFIX_BUFSZ (IAS_APIKEY_PREFIX_LEN + 1)
#define IAS_APIKEY_HASH_BUFSZ (IAS_SHA256_HEX_LEN + 1)

/* A fresh key and its prefix, NUL-terminated. IAS_ERR if the CSPRNG fails. */
int ias_apikey_generate(char key[IAS_APIKEY_BUFSZ],
                        char prefix[IAS_APIKEY_PREFIX_BUFSZ]) IAS_MUSTCHECK;

/* Strict syntax check: exactly "ias_", 8 of [a-z0-9], ".", 43 canonical
 * base64url characters, then the NUL. Reads at most IAS_APIKEY_LEN+1 bytes.
 * On IAS_OK copies the prefix into prefix (may be NULL). */
int ias_apikey_parse(const char *key, char prefix[IAS_APIKEY_PREFIX_BUFSZ]) IAS_MUSTCHECK;

/* Lowercase hex SHA-256 of the whole key string (what the database stores). */
void ias_apikey_hash(const char *key, char hex[IAS_APIKEY_HASH_BUFSZ]);

/* Takes an Authorization header value: "Bearer" in any case, exactly one
 * space, then a key that passes ias_apikey_parse and nothing after it (no
 * other scheme, no extra or trailing whitespace). On IAS_OK copies the key
 * into key and its prefix into prefix (may be NULL). */
int ias_apikey_from_bearer(const char *value, char key[IAS_APIKEY_BUFSZ],
                           char prefix[IAS_APIKEY_PREFIX_BUFSZ]) IAS_MUSTCHECK;

/* True when SHA-256(key) equals stored_hex (64 hex chars, either case). The
 * digest comparison is constant-time. Malformed input is simply false. */
bool ias_apikey_verify(const char *key, const char *stored_hex);

#endif
