/* Password hashing (bcrypt "$2b$" through libxcrypt) and complexity policy.
 *
 * All functions are thread-safe: they use crypt_rn/crypt_gensalt_rn with a
 * per-call struct crypt_data. Hashing at cost 12 takes a few hundred ms of
 * CPU: call it from an off-path worker thread, never from an event loop. */
#ifndef IAS_PASSWORD_H
#define IAS_PASSWORD_H

#include "ias/common.h"

#define IAS_PASSWORD_COST 12
#define IAS_PASSWORD_MIN_CHARS 12   /* counted in UTF-8 code points */
#define IAS_PASSWORD_MAX_BYTES 72   /* bcrypt ignores anything after 72 bytes */
#define IAS_PASSWORD_HASH_BUFSZ 128 /* a bcrypt hash is 60 characters */

/* Hashes plain (1..72 bytes) at IAS_PASSWORD_COST into out (a "$2b$12$..."
 * string). IAS_ERR on bad input, a small buffer or a libcrypt failure. Does not
 * apply the policy: call ias_password_check_policy() first for new passwords. */
int ias_password_hash(const char *plain, char *out, size_t outlen) IAS_MUSTCHECK;

/* Same with an explicit cost (4..31). For tests, which need cheap hashes;
 * production code uses ias_password_hash(). */
int ias_password_hash_cost(const char *plain, int cost, char *out, size_t outlen) IAS_MUSTCHECK;

/* True when plain matches hash (a $2a$/$2b$/$2y$ bcrypt string). Re-hashes
 * with the stored salt and cost and compares in constant time. Anything
 * malformed, or a plain over 72 bytes, is false. */
bool ias_password_verify(const char *plain, const char *hash);

/* New-password policy: at least 12 characters, at most 72 bytes, an upper-case
 * and a lower-case ASCII letter, a digit and a symbol (ASCII punctuation or
 * space, or any non-ASCII character); no control characters. IAS_OK, or
 * IAS_ERR with a sentence for the user in why (may be NULL). */
int ias_password_check_policy(const char *plain, char *why, size_t whylen) IAS_MUSTCHECK;

#endif
