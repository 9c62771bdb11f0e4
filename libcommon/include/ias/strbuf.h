/* A growing, always NUL-terminated byte buffer: the one used wherever text or
 * bytes are built up piece by piece (JSON writer, metrics page, SSE fields,
 * the router's pending bytes). Zero-initialise it ({0}); out of memory aborts
 * (ias_xrealloc). */
#ifndef IAS_STRBUF_H
#define IAS_STRBUF_H

#include "ias/common.h"

typedef struct ias_strbuf {
    char *p; /* NULL until the first byte is reserved */
    size_t len, cap;
} ias_strbuf;

/* Room for more bytes plus the terminating NUL; the first allocation is at
 * least min_cap (0: 256). */
void ias_strbuf_reserve(ias_strbuf *b, size_t more, size_t min_cap);
void ias_strbuf_put(ias_strbuf *b, const void *data, size_t n);
void ias_strbuf_putc(ias_strbuf *b, char c);
void ias_strbuf_puts(ias_strbuf *b, const char *s);
/* Drops the first n bytes (n <= len). */
void ias_strbuf_consume(ias_strbuf *b, size_t n);
/* The text (never NULL; "" when empty), handed over to the caller to free();
 * the buffer is empty afterwards. */
char *ias_strbuf_take(ias_strbuf *b);
void ias_strbuf_free(ias_strbuf *b);

#endif
