/* Shared basics: return codes, attributes, allocation that dies on OOM. */
#ifndef IAS_COMMON_H
#define IAS_COMMON_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

/* Objects kept on a free list for reuse stay poisoned under ASan, so a use
 * after release is still caught; no-ops in other builds. */
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define IAS_POISON(addr, size) ASAN_POISON_MEMORY_REGION(addr, size)
#define IAS_UNPOISON(addr, size) ASAN_UNPOISON_MEMORY_REGION(addr, size)
#else
#define IAS_POISON(addr, size) ((void)(addr), (void)(size))
#define IAS_UNPOISON(addr, size) ((void)(addr), (void)(size))
#endif

/* Few return codes, always checked (nginx NGX_OK/NGX_ERROR/NGX_AGAIN). */
enum {
    IAS_OK = 0,
    IAS_ERR = -1,
    IAS_AGAIN = -2,
};

#define IAS_MUSTCHECK __attribute__((warn_unused_result))
#define IAS_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define IAS_NORETURN __attribute__((noreturn))
#define IAS_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define IAS_UNUSED(x) ((void)(x))

/* Out of memory is the third tier of failure: log and abort. */
void *ias_xmalloc(size_t n);
void *ias_xcalloc(size_t nmemb, size_t size);
void *ias_xrealloc(void *p, size_t n);
char *ias_xstrdup(const char *s);
char *ias_xstrndup(const char *s, size_t n);
char *ias_xasprintf(const char *fmt, ...) IAS_PRINTF(1, 2);
IAS_NORETURN void ias_die(const char *fmt, ...) IAS_PRINTF(1, 2);

/* Bounded copy that always terminates; returns IAS_ERR when truncated. */
int ias_strlcpy(char *dst, const char *src, size_t dstlen);
/* Appends s to dst[0..cap) at *used, cutting it as snprintf would (dst stays
 * NUL-terminated, *used stops at cap - 1); no format machinery, for hot paths. */
void ias_str_append_cut(char *dst, size_t cap, size_t *used, const char *s);

/* Value of a hex digit (either case), or -1. */
int ias_hex_digit(unsigned char c);

/* The character a one-letter JSON escape \c stands for (c one of " \ / b f
 * n r t), or -1 (for 'u' too: \uXXXX is the caller's). */
int ias_json_escape_value(unsigned char c);

/* Decimal without snprintf (hot paths format several numbers per request). */
enum { IAS_I64_DEC_MAX = 24 }; /* "-9223372036854775808" and the NUL */
/* The digits of v at p, no NUL; returns how many (at most 20). */
size_t ias_put_u64(char *p, uint64_t v);
/* v as a NUL-terminated decimal string in out; returns its length. */
size_t ias_fmt_i64(char out[IAS_I64_DEC_MAX], int64_t v);

/* Monotonic and wall clocks. */
uint64_t ias_now_ms(void); /* CLOCK_MONOTONIC */
uint64_t ias_now_us(void); /* CLOCK_MONOTONIC */
int64_t ias_wall_ms(void); /* CLOCK_REALTIME, ms since epoch */
/* ISO 8601 UTC with milliseconds: 2026-11-22T10:11:12.345Z (buf >= 25). */
void ias_iso8601_ms(int64_t wall_ms, char *buf, size_t len);

#endif
