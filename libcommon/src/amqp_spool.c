/* The publisher's on-disk spool: append-only segment files of CRC'd,
 * length-prefixed records (format in ias/amqp.h). One process owns a spool
 * directory at a time (flock on <dir>/LOCK). */
#include "ias/amqp.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ias/log.h"

#define SEG_MAGIC "IASSPL1\n"
#define SEG_MAGIC_LEN 8
#define REC_MAGIC 0x52534149u /* "IASR" little-endian */
#define REC_HDR 12            /* magic, payload_len, crc */
#define REC_FIXED 18          /* ts, three u16 lengths, u32 body length */
#define REC_PAYLOAD_MAX (REC_FIXED + 3 * (IAS_AMQP_SHORTSTR_MAX + 1) + IAS_AMQP_BODY_MAX)
/* A segment is read whole; anything larger is not one of ours. */
#define SEG_READ_MAX ((uint64_t)512 * 1024 * 1024)

typedef struct seg {
    uint64_t id;
    uint64_t size;
} seg;

struct ias_spool {
    pthread_mutex_t mu;
    char *dir;
    int dirfd;
    int lockfd;
    size_t segment_bytes;
    uint64_t max_bytes;
    int fd;          /* segment being appended to, -1 when sealed */
    bool dirty;      /* fd has writes not yet fdatasync'd */
    uint64_t cur_id; /* its id (valid when fd >= 0) */
    uint64_t next_id;
    seg *segs; /* every segment on disk, ascending id */
    size_t nsegs, capsegs;
    uint64_t total;
    bool journal; /* never fsync: see ias_spool_set_journal */
};

struct ias_spool_reader {
    uint64_t id;
    unsigned char *buf;
    size_t len, pos;
    size_t skipped;
};

/* CRC-32 (reflected 0xEDB88320), slicing by 8: with the crash journal every
 * event is CRC'd on the caller's thread, and a nibble table cost ~10 cycles a
 * byte there (the largest part of a journal append). The tables are built once. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++)
            crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xFF];
}

uint32_t ias_spool_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;

    (void)pthread_once(&crc_once, crc_init);
    crc = ~crc;
    while (len >= 8) {
        uint32_t lo = crc ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                             (uint32_t)p[3] << 24);
        crc = crc_tab[7][lo & 0xFF] ^ crc_tab[6][(lo >> 8) & 0xFF] ^ crc_tab[5][(lo >> 16) & 0xFF] ^
              crc_tab[4][lo >> 24] ^ crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^
              crc_tab[0][p[7]];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = (crc >> 8) ^ crc_tab[0][(crc ^ *p++) & 0xFF];
    return ~crc;
}

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint16_t get16(const unsigned char *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t get64(const unsigned char *p)
{
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static void seg_path(const ias_spool *s, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/seg-%020" PRIu64 ".spool", s->dir, id);
}

static int write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return IAS_ERR;
        }
        p += n;
        len -= (size_t)n;
    }
    return IAS_OK;
}

static int mkdir_p(const char *dir)
{
    char path[4096];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path))
        return IAS_ERR;
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char saved = path[i];
            path[i] = '\0';
            if (mkdir(path, 0700) != 0 && errno != EEXIST)
                return IAS_ERR;
            path[i] = saved;
        }
    }
    return IAS_OK;
}

static void segs_push(ias_spool *s, uint64_t id, uint64_t size)
{
    if (s->nsegs == s->capsegs) {
        s->capsegs = s->capsegs ? 2 * s->capsegs : 16;
        s->segs = ias_xrealloc(s->segs, s->capsegs * sizeof(*s->segs));
    }
    s->segs[s->nsegs].id = id;
    s->segs[s->nsegs].size = size;
    s->nsegs++;
    s->total += size;
}

static int seg_cmp(const void *a, const void *b)
{
    const seg *x = a, *y = b;
    return x->id < y->id ? -1 : x->id > y->id;
}

static int scan_dir(ias_spool *s)
{
    DIR *d = opendir(s->dir);
    struct dirent *e;

    if (!d)
        return IAS_ERR;
    while ((e = readdir(d)) != NULL) {
        uint64_t id;
        char tail[16];
        struct stat stt;

        if (strncmp(e->d_name, "seg-", 4) != 0 || strlen(e->d_name) != 4 + 20 + 6)
            continue;
        if (sscanf(e->d_name, "seg-%20" SCNu64 "%15s", &id, tail) != 2 ||
            strcmp(tail, ".spool") != 0)
            continue;
        if (fstatat(s->dirfd, e->d_name, &stt, 0) != 0 || !S_ISREG(stt.st_mode))
            continue;
        segs_push(s, id, (uint64_t)stt.st_size);
        if (id >= s->next_id)
            s->next_id = id + 1;
    }
    closedir(d);
    if (s->nsegs > 1)
        qsort(s->segs, s->nsegs, sizeof(*s->segs), seg_cmp);
    return IAS_OK;
}

int ias_spool_open(const char *dir, size_t segment_bytes, uint64_t max_bytes, ias_spool **out)
{
    ias_spool *s;
    char lockpath[4200];

    *out = NULL;
    if (!dir || !*dir || strlen(dir) > 4000) {
        ias_error(NULL, "spool: invalid directory");
        return IAS_ERR;
    }
    if (mkdir_p(dir) != IAS_OK) {
        ias_error(NULL, "spool: cannot create %s: %s", dir, strerror(errno));
        return IAS_ERR;
    }
    s = ias_xcalloc(1, sizeof(*s));
    s->dir = ias_xstrdup(dir);
    s->fd = -1;
    s->lockfd = -1;
    s->next_id = 1;
    s->segment_bytes = segment_bytes ? segment_bytes : 4 * 1024 * 1024;
    s->max_bytes = max_bytes ? max_bytes : (uint64_t)1024 * 1024 * 1024;
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        ias_error(NULL, "spool: cannot open %s: %s", dir, strerror(errno));
        goto fail;
    }
    /* Two writers on one spool would delete each other's segments. */
    snprintf(lockpath, sizeof(lockpath), "%s/LOCK", dir);
    s->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (s->lockfd < 0 || flock(s->lockfd, LOCK_EX | LOCK_NB) != 0) {
        ias_error(NULL, "spool: %s is in use by another process or publisher (%s)", dir,
                  strerror(errno));
        goto fail;
    }
    if (scan_dir(s) != IAS_OK) {
        ias_error(NULL, "spool: cannot read %s: %s", dir, strerror(errno));
        goto fail;
    }
    if (pthread_mutex_init(&s->mu, NULL) != 0)
        ias_die("pthread_mutex_init failed");
    if (s->nsegs > 0)
        ias_info(NULL, "spool: %s holds %zu segment(s), %" PRIu64 " bytes to replay", dir, s->nsegs,
                 s->total);
    *out = s;
    return IAS_OK;

fail:
    if (s->lockfd >= 0)
        close(s->lockfd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    free(s->segs);
    free(s->dir);
    free(s);
    return IAS_ERR;
}

static void seal_locked(ias_spool *s)
{
    if (s->fd >= 0) {
        /* Unsynced appends become durable before the segment is sealed. */
        if (s->dirty && !s->journal && fdatasync(s->fd) != 0)
            ias_error(NULL, "spool: fdatasync on %s failed: %s", s->dir, strerror(errno));
        s->dirty = false;
        close(s->fd);
        s->fd = -1;
    }
}

void ias_spool_free(ias_spool *s)
{
    if (!s)
        return;
    seal_locked(s);
    pthread_mutex_destroy(&s->mu);
    close(s->lockfd); /* releases the flock */
    close(s->dirfd);
    free(s->segs);
    free(s->dir);
    free(s);
}

static seg *find_seg(ias_spool *s, uint64_t id)
{
    for (size_t i = 0; i < s->nsegs; i++)
        if (s->segs[i].id == id)
            return &s->segs[i];
    return NULL;
}

static int open_segment_locked(ias_spool *s)
{
    char path[4200];
    uint64_t id = s->next_id++;
    int fd;

    seg_path(s, id, path, sizeof(path));
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
        ias_error(NULL, "spool: cannot create %s: %s", path, strerror(errno));
        return IAS_ERR;
    }
    /* The directory entry must be durable too, or a crash loses the file (a
     * journal only has to survive a process crash: the page cache suffices). */
    if (write_all(fd, SEG_MAGIC, SEG_MAGIC_LEN) != IAS_OK ||
        (!s->journal && (fsync(fd) != 0 || fsync(s->dirfd) != 0))) {
        ias_error(NULL, "spool: cannot initialise %s: %s", path, strerror(errno));
        close(fd);
        (void)unlink(path);
        return IAS_ERR;
    }
    s->fd = fd;
    s->cur_id = id;
    segs_push(s, id, SEG_MAGIC_LEN);
    return IAS_OK;
}

static size_t rec_size(const ias_spool_rec *r)
{
    return REC_HDR + REC_FIXED + strlen(r->routing_key) + strlen(r->message_id) + strlen(r->type) +
           3 + r->body_len;
}

static bool rec_valid(const ias_spool_rec *r)
{
    return r->routing_key && r->message_id && r->type && (r->body || r->body_len == 0) &&
           strlen(r->routing_key) <= IAS_AMQP_SHORTSTR_MAX &&
           strlen(r->message_id) <= IAS_AMQP_SHORTSTR_MAX &&
           strlen(r->type) <= IAS_AMQP_SHORTSTR_MAX && r->body_len <= IAS_AMQP_BODY_MAX;
}

static size_t rec_encode(const ias_spool_rec *r, unsigned char *out)
{
    size_t rk = strlen(r->routing_key), mid = strlen(r->message_id), ty = strlen(r->type);
    size_t plen = REC_FIXED + rk + mid + ty + 3 + r->body_len;
    unsigned char *p = out + REC_HDR;

    put64(p, (uint64_t)r->timestamp_ms);
    put16(p + 8, (uint16_t)rk);
    put16(p + 10, (uint16_t)mid);
    put16(p + 12, (uint16_t)ty);
    put32(p + 14, (uint32_t)r->body_len);
    p += REC_FIXED;
    memcpy(p, r->routing_key, rk + 1);
    p += rk + 1;
    memcpy(p, r->message_id, mid + 1);
    p += mid + 1;
    memcpy(p, r->type, ty + 1);
    p += ty + 1;
    if (r->body_len)
        memcpy(p, r->body, r->body_len);
    put32(out, REC_MAGIC);
    put32(out + 4, (uint32_t)plen);
    put32(out + 8, ias_spool_crc32(0, out + REC_HDR, plen));
    return REC_HDR + plen;
}

static int spool_append(ias_spool *s, const ias_spool_rec *recs, size_t n, bool sync,
                        uint64_t *seg_id)
{
    unsigned char *buf;
    size_t len = 0, off = 0;
    seg *cur;
    int rc = IAS_ERR;

    if (n == 0)
        return IAS_OK;
    for (size_t i = 0; i < n; i++) {
        if (!rec_valid(&recs[i])) {
            ias_error(NULL, "spool: invalid record (field too long or missing)");
            return IAS_ERR;
        }
        len += rec_size(&recs[i]);
    }
    buf = ias_xmalloc(len);
    for (size_t i = 0; i < n; i++)
        off += rec_encode(&recs[i], buf + off);

    pthread_mutex_lock(&s->mu);
    if (s->total + len > s->max_bytes) {
        ias_error(NULL, "spool: %s is full (%" PRIu64 " of %" PRIu64 " bytes)", s->dir, s->total,
                  s->max_bytes);
        goto out;
    }
    if (s->fd >= 0) {
        cur = find_seg(s, s->cur_id);
        if (!cur || cur->size >= s->segment_bytes)
            seal_locked(s);
    }
    if (s->fd < 0 && open_segment_locked(s) != IAS_OK)
        goto out;
    cur = find_seg(s, s->cur_id);
    if (write_all(s->fd, buf, len) != IAS_OK || ((sync || s->dirty) && fdatasync(s->fd) != 0)) {
        ias_error(NULL, "spool: write to %s failed: %s", s->dir, strerror(errno));
        /* Cut a partial write off so it cannot look like data; if that fails
         * the reader still skips it by CRC. Either way start a new segment. */
        if (ftruncate(s->fd, (off_t)cur->size) == 0)
            (void)fdatasync(s->fd);
        seal_locked(s);
        goto out;
    }
    cur->size += len;
    s->total += len;
    s->dirty = !sync && !s->journal;
    if (seg_id)
        *seg_id = s->cur_id;
    rc = IAS_OK;
out:
    pthread_mutex_unlock(&s->mu);
    free(buf);
    return rc;
}

int ias_spool_append(ias_spool *s, const ias_spool_rec *recs, size_t n)
{
    return spool_append(s, recs, n, true, NULL);
}

int ias_spool_append_nosync(ias_spool *s, const ias_spool_rec *recs, size_t n)
{
    return spool_append(s, recs, n, false, NULL);
}

void ias_spool_set_journal(ias_spool *s)
{
    pthread_mutex_lock(&s->mu);
    s->journal = true;
    pthread_mutex_unlock(&s->mu);
}

int ias_spool_journal_append(ias_spool *s, const ias_spool_rec *rec, uint64_t *seg_id)
{
    return spool_append(s, rec, 1, false, seg_id);
}

void ias_spool_seal(ias_spool *s)
{
    pthread_mutex_lock(&s->mu);
    seal_locked(s);
    pthread_mutex_unlock(&s->mu);
}

int ias_spool_sync(ias_spool *s)
{
    int rc = IAS_OK;

    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0 && s->dirty) {
        if (fdatasync(s->fd) != 0) {
            ias_error(NULL, "spool: fdatasync on %s failed: %s", s->dir, strerror(errno));
            rc = IAS_ERR;
        } else {
            s->dirty = false;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ias_spool_list(ias_spool *s, uint64_t **ids, size_t *n)
{
    pthread_mutex_lock(&s->mu);
    seal_locked(s);
    *n = s->nsegs;
    *ids = ias_xmalloc((s->nsegs ? s->nsegs : 1) * sizeof(**ids));
    for (size_t i = 0; i < s->nsegs; i++)
        (*ids)[i] = s->segs[i].id;
    pthread_mutex_unlock(&s->mu);
    return IAS_OK;
}

int ias_spool_remove(ias_spool *s, uint64_t id)
{
    char path[4200];
    int rc = IAS_OK;

    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0 && s->cur_id == id)
        seal_locked(s);
    seg_path(s, id, path, sizeof(path));
    if (unlink(path) != 0 && errno != ENOENT) {
        ias_error(NULL, "spool: cannot delete %s: %s", path, strerror(errno));
        rc = IAS_ERR;
    } else {
        for (size_t i = 0; i < s->nsegs; i++) {
            if (s->segs[i].id == id) {
                s->total -= s->segs[i].size;
                memmove(&s->segs[i], &s->segs[i + 1], (s->nsegs - i - 1) * sizeof(*s->segs));
                s->nsegs--;
                break;
            }
        }
        /* Not critical: at worst a replayed segment comes back after a crash,
         * which consumers tolerate (idempotent by message_id). */
        if (!s->journal)
            (void)fsync(s->dirfd);
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int ias_spool_quarantine(ias_spool *s, uint64_t id)
{
    char path[4200], bad[4210];
    int rc = IAS_OK;

    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0 && s->cur_id == id)
        seal_locked(s);
    seg_path(s, id, path, sizeof(path));
    snprintf(bad, sizeof(bad), "%s.bad", path);
    if (rename(path, bad) != 0 && errno != ENOENT) {
        ias_error(NULL, "spool: cannot rename %s: %s", path, strerror(errno));
        rc = IAS_ERR;
    } else {
        for (size_t i = 0; i < s->nsegs; i++) {
            if (s->segs[i].id == id) {
                s->total -= s->segs[i].size;
                memmove(&s->segs[i], &s->segs[i + 1], (s->nsegs - i - 1) * sizeof(*s->segs));
                s->nsegs--;
                break;
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}

size_t ias_spool_segments(ias_spool *s)
{
    size_t n;

    pthread_mutex_lock(&s->mu);
    n = s->nsegs;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t ias_spool_bytes(ias_spool *s)
{
    uint64_t n;

    pthread_mutex_lock(&s->mu);
    n = s->total;
    pthread_mutex_unlock(&s->mu);
    return n;
}

const char *ias_spool_dir(const ias_spool *s)
{
    return s->dir;
}

int ias_spool_reader_open(ias_spool *s, uint64_t id, ias_spool_reader **out)
{
    char path[4200];
    struct stat st;
    ias_spool_reader *r;
    int fd;
    size_t got = 0;

    *out = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0 && s->cur_id == id)
        seal_locked(s); /* never read a segment that may still grow */
    pthread_mutex_unlock(&s->mu);

    seg_path(s, id, path, sizeof(path));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ias_error(NULL, "spool: cannot open %s: %s", path, strerror(errno));
        return IAS_ERR;
    }
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size > SEG_READ_MAX) {
        ias_error(NULL, "spool: %s: cannot stat or larger than %" PRIu64 " bytes", path,
                  SEG_READ_MAX);
        close(fd);
        return IAS_ERR;
    }
    r = ias_xcalloc(1, sizeof(*r));
    r->id = id;
    r->len = (size_t)st.st_size;
    r->buf = ias_xmalloc(r->len ? r->len : 1);
    while (got < r->len) {
        ssize_t k = read(fd, r->buf + got, r->len - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            ias_error(NULL, "spool: read %s: %s", path, k < 0 ? strerror(errno) : "short read");
            close(fd);
            ias_spool_reader_free(r);
            return IAS_ERR;
        }
        got += (size_t)k;
    }
    close(fd);
    if (r->len >= SEG_MAGIC_LEN && memcmp(r->buf, SEG_MAGIC, SEG_MAGIC_LEN) == 0) {
        r->pos = SEG_MAGIC_LEN;
    } else if (r->len < SEG_MAGIC_LEN && memcmp(r->buf, SEG_MAGIC, r->len) == 0) {
        r->pos = r->len; /* crash while creating the segment: empty */
    } else {
        ias_warn(NULL, "spool: %s has no segment header; scanning it for records", path);
    }
    *out = r;
    return IAS_OK;
}

/* Decodes the record at r->pos if it is complete and intact. */
static bool decode_at(ias_spool_reader *r, ias_spool_rec *rec, size_t *reclen)
{
    const unsigned char *p = r->buf + r->pos, *q;
    size_t avail = r->len - r->pos, plen, rk, mid, ty, body;

    if (avail < REC_HDR || get32(p) != REC_MAGIC)
        return false;
    plen = get32(p + 4);
    if (plen < REC_FIXED + 3 || plen > REC_PAYLOAD_MAX || plen > avail - REC_HDR)
        return false;
    if (get32(p + 8) != ias_spool_crc32(0, p + REC_HDR, plen))
        return false;
    q = p + REC_HDR;
    rk = get16(q + 8);
    mid = get16(q + 10);
    ty = get16(q + 12);
    body = get32(q + 14);
    if (rk > IAS_AMQP_SHORTSTR_MAX || mid > IAS_AMQP_SHORTSTR_MAX || ty > IAS_AMQP_SHORTSTR_MAX ||
        REC_FIXED + rk + mid + ty + 3 + (uint64_t)body != plen)
        return false;
    q += REC_FIXED;
    if (q[rk] != '\0' || q[rk + 1 + mid] != '\0' || q[rk + 1 + mid + 1 + ty] != '\0')
        return false;
    rec->timestamp_ms = (int64_t)get64(p + REC_HDR);
    rec->routing_key = (const char *)q;
    rec->message_id = (const char *)q + rk + 1;
    rec->type = (const char *)q + rk + 1 + mid + 1;
    rec->body = q + rk + 1 + mid + 1 + ty + 1;
    rec->body_len = body;
    *reclen = REC_HDR + plen;
    return true;
}

int ias_spool_reader_next(ias_spool_reader *r, ias_spool_rec *rec)
{
    size_t start = r->pos, reclen;

    while (r->pos < r->len) {
        if (decode_at(r, rec, &reclen)) {
            if (r->pos != start)
                ias_warn(NULL,
                         "spool: segment %" PRIu64 ": skipped %zu damaged bytes at offset %zu",
                         r->id, r->pos - start, start);
            r->skipped += r->pos - start;
            r->pos += reclen;
            return IAS_OK;
        }
        r->pos++;
    }
    if (r->pos != start) {
        /* Typically a record torn by a crash in the middle of a write: its
         * append never returned IAS_OK, so nothing durably spooled is lost. */
        ias_warn(NULL, "spool: segment %" PRIu64 ": ignored %zu torn/damaged bytes at offset %zu",
                 r->id, r->pos - start, start);
        r->skipped += r->pos - start;
    }
    return IAS_AGAIN;
}

size_t ias_spool_reader_skipped(const ias_spool_reader *r)
{
    return r->skipped;
}

void ias_spool_reader_free(ias_spool_reader *r)
{
    if (!r)
        return;
    free(r->buf);
    free(r);
}
