/* Lua scripts addressed by SHA1. The digest is computed locally (the same SHA1
 * Redis computes for SCRIPT LOAD), so EVALSHA works from the first call and EVAL
 * is only needed after a server restart or SCRIPT FLUSH. */
#include "ias/redis.h"

#include <string.h>

#include <openssl/sha.h>

void ias_redis_script_init(ias_redis_script *s, const char *source)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA_DIGEST_LENGTH];

    if (!source)
        ias_die("redis: script source is NULL");
    if (!SHA1((const unsigned char *)source, strlen(source), md))
        ias_die("redis: SHA1 failed");
    s->source = source;
    for (size_t i = 0; i < SHA_DIGEST_LENGTH; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 0xf];
    }
    s->sha[40] = '\0';
}
