/* The publisher spool's file format and the publisher's broker-away path,
 * without a broker. */
#include "testlib.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ias/amqp.h"
#include "ias/log.h"

typedef struct tdir {
    char path[256];
} tdir;

static void tdir_make(tdir *d)
{
    snprintf(d->path, sizeof(d->path), "/tmp/ias_spool_test_XXXXXX");
    assert_non_null(mkdtemp(d->path));
}

static void tdir_rm(tdir *d)
{
    DIR *dir = opendir(d->path);
    struct dirent *e;
    char p[600];

    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", d->path, e->d_name);
        assert_int_equal(unlink(p), 0);
    }
    closedir(dir);
    assert_int_equal(rmdir(d->path), 0);
}

/* Number of seg-*.spool files in a directory. */
static size_t count_segments(const char *path)
{
    DIR *dir = opendir(path);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(dir);
    while ((e = readdir(dir)) != NULL) {
        size_t l = strlen(e->d_name);
        if (strncmp(e->d_name, "seg-", 4) == 0 && l > 6 && strcmp(e->d_name + l - 6, ".spool") == 0)
            n++;
    }
    closedir(dir);
    return n;
}

static void seg_file(const char *dir, uint64_t id, char *buf, size_t len)
{
    snprintf(buf, len, "%s/seg-%020llu.spool", dir, (unsigned long long)id);
}

static ias_spool_rec mkrec(int i, char *mid, size_t midlen, char *body, size_t bodylen)
{
    ias_spool_rec r;

    snprintf(mid, midlen, "00000000-0000-4000-8000-%012d", i);
    snprintf(body, bodylen, "{\"event_id\":\"%s\",\"n\":%d}", mid, i);
    r.timestamp_ms = 1700000000000LL + i;
    r.routing_key = (i % 2) ? "usage.recorded" : "audit.users.login";
    r.message_id = mid;
    r.type = (i % 2) ? "usage.recorded.v1" : "audit.recorded.v1";
    r.body = body;
    r.body_len = strlen(body);
    return r;
}

static void append_n(ias_spool *s, int from, int n)
{
    for (int i = from; i < from + n; i++) {
        char mid[64], body[128];
        ias_spool_rec r = mkrec(i, mid, sizeof(mid), body, sizeof(body));
        assert_int_equal(ias_spool_append(s, &r, 1), IAS_OK);
    }
}

/* Reads every record of every segment, checking they are from..from+n-1 in
 * order. Returns the number of damaged bytes skipped. */
static size_t read_all(ias_spool *s, int from, int n)
{
    uint64_t *ids;
    size_t nids, skipped = 0;
    int i = from;

    assert_int_equal(ias_spool_list(s, &ids, &nids), IAS_OK);
    for (size_t k = 0; k < nids; k++) {
        ias_spool_reader *r;
        ias_spool_rec rec;

        assert_int_equal(ias_spool_reader_open(s, ids[k], &r), IAS_OK);
        while (ias_spool_reader_next(r, &rec) == IAS_OK) {
            char mid[64], body[128];
            ias_spool_rec want = mkrec(i, mid, sizeof(mid), body, sizeof(body));
            assert_string_equal(rec.message_id, want.message_id);
            assert_string_equal(rec.routing_key, want.routing_key);
            assert_string_equal(rec.type, want.type);
            assert_int_equal(rec.timestamp_ms, want.timestamp_ms);
            assert_int_equal(rec.body_len, want.body_len);
            assert_memory_equal(rec.body, want.body, want.body_len);
            i++;
        }
        skipped += ias_spool_reader_skipped(r);
        ias_spool_reader_free(r);
    }
    free(ids);
    assert_int_equal(i, from + n);
    return skipped;
}

static void test_crc32_vector(void **state)
{
    assert_int_equal(ias_spool_crc32(0, "123456789", 9), 0xCBF43926u);
    assert_int_equal(ias_spool_crc32(0, "", 0), 0);
    /* incremental == one shot */
    assert_int_equal(ias_spool_crc32(ias_spool_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

static void test_roundtrip_and_format(void **state)
{
    tdir d;
    ias_spool *s;
    char path[512];
    unsigned char hdr[32];
    int fd;

    tdir_make(&d);
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    assert_int_equal(ias_spool_segments(s), 0);
    append_n(s, 0, 10);
    assert_int_equal(ias_spool_segments(s), 1);
    assert_int_equal(read_all(s, 0, 10), 0);

    /* Byte-level check of the documented layout. */
    seg_file(d.path, 1, path, sizeof(path));
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(read(fd, hdr, sizeof(hdr)), sizeof(hdr));
    close(fd);
    assert_memory_equal(hdr, "IASSPL1\n", 8);
    assert_memory_equal(hdr + 8, "IASR", 4);
    {
        char mid[64], body[128];
        ias_spool_rec r0 = mkrec(0, mid, sizeof(mid), body, sizeof(body));
        uint32_t plen = hdr[12] | hdr[13] << 8 | hdr[14] << 16 | (uint32_t)hdr[15] << 24;
        assert_int_equal(plen, 18 + strlen(r0.routing_key) + strlen(mid) + strlen(r0.type) + 3 +
                                   r0.body_len);
        /* timestamp little-endian at payload start */
        assert_int_equal(hdr[20] | hdr[21] << 8, (1700000000000LL) & 0xffff);
    }
    ias_spool_free(s);
    tdir_rm(&d);
}

/* write()-only appends (the producer's last resort) read back like synced ones,
 * across a rotation, and ias_spool_sync is harmless when nothing is pending. */
static void test_append_nosync(void **state)
{
    tdir d;
    ias_spool *s;
    ias_spool_rec recs[20];
    char mids[20][64], bodies[20][128];

    tdir_make(&d);
    assert_int_equal(ias_spool_open(d.path, 1024, 0, &s), IAS_OK);
    for (int i = 0; i < 20; i++)
        recs[i] = mkrec(i, mids[i], sizeof(mids[i]), bodies[i], sizeof(bodies[i]));
    assert_int_equal(ias_spool_sync(s), IAS_OK); /* no segment yet */
    for (int i = 0; i < 10; i++)
        assert_int_equal(ias_spool_append_nosync(s, &recs[i], 1), IAS_OK);
    assert_int_equal(ias_spool_sync(s), IAS_OK);
    assert_int_equal(ias_spool_sync(s), IAS_OK);
    assert_int_equal(ias_spool_append_nosync(s, &recs[10], 5), IAS_OK);
    assert_int_equal(ias_spool_append(s, &recs[15], 5), IAS_OK); /* syncs the rest too */
    assert_true(ias_spool_segments(s) > 1);
    assert_int_equal(read_all(s, 0, 20), 0);
    ias_spool_free(s);
    tdir_rm(&d);
}

static void test_batch_append_and_rotation(void **state)
{
    tdir d;
    ias_spool *s;
    ias_spool_rec recs[50];
    char mids[50][64], bodies[50][128];
    uint64_t *ids;
    size_t n;

    tdir_make(&d);
    /* Tiny segments: every append after ~1 KiB starts a new file. */
    assert_int_equal(ias_spool_open(d.path, 1024, 0, &s), IAS_OK);
    for (int i = 0; i < 50; i++)
        recs[i] = mkrec(i, mids[i], sizeof(mids[i]), bodies[i], sizeof(bodies[i]));
    assert_int_equal(ias_spool_append(s, recs, 10), IAS_OK); /* one write, one fsync */
    for (int i = 10; i < 50; i++)
        assert_int_equal(ias_spool_append(s, &recs[i], 1), IAS_OK);
    assert_true(ias_spool_segments(s) > 2);
    assert_int_equal(count_segments(d.path), ias_spool_segments(s));
    assert_int_equal(read_all(s, 0, 50), 0);

    /* Removing segments, oldest first, leaves a consistent tail. */
    assert_int_equal(ias_spool_list(s, &ids, &n), IAS_OK);
    for (size_t i = 0; i + 1 < n; i++)
        assert_true(ids[i] < ids[i + 1]);
    assert_int_equal(ias_spool_remove(s, ids[0]), IAS_OK);
    assert_int_equal(ias_spool_segments(s), n - 1);
    assert_int_equal(count_segments(d.path), n - 1);
    free(ids);
    ias_spool_free(s);

    /* Reopen: segments are found again, new ones get higher ids. */
    assert_int_equal(ias_spool_open(d.path, 1024, 0, &s), IAS_OK);
    assert_int_equal(ias_spool_segments(s), n - 1);
    {
        uint64_t *ids2, maxid;
        size_t n2;
        assert_int_equal(ias_spool_list(s, &ids2, &n2), IAS_OK);
        maxid = ids2[n2 - 1];
        free(ids2);
        append_n(s, 100, 1);
        assert_int_equal(ias_spool_list(s, &ids2, &n2), IAS_OK);
        assert_true(ids2[n2 - 1] > maxid);
        for (size_t i = 0; i < n2; i++)
            assert_int_equal(ias_spool_remove(s, ids2[i]), IAS_OK);
        free(ids2);
    }
    assert_int_equal(ias_spool_segments(s), 0);
    assert_int_equal(ias_spool_bytes(s), 0);
    assert_int_equal(count_segments(d.path), 0);
    ias_spool_free(s);
    tdir_rm(&d);
}

static void test_torn_tail_ignored(void **state)
{
    tdir d;
    ias_spool *s;
    char path[512];
    struct stat st;
    size_t skipped;

    tdir_make(&d);
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    append_n(s, 0, 5);
    ias_spool_free(s);

    /* A crash in the middle of writing record 5: append a prefix of it. */
    seg_file(d.path, 1, path, sizeof(path));
    assert_int_equal(stat(path, &st), 0);
    {
        tdir d2;
        ias_spool *s2;
        char path2[512];
        struct stat st2;
        char buf[512];
        int fd;
        ssize_t k;

        tdir_make(&d2);
        assert_int_equal(ias_spool_open(d2.path, 0, 0, &s2), IAS_OK);
        append_n(s2, 5, 1);
        ias_spool_free(s2);
        seg_file(d2.path, 1, path2, sizeof(path2));
        assert_int_equal(stat(path2, &st2), 0);
        fd = open(path2, O_RDONLY);
        assert_true(fd >= 0);
        k = pread(fd, buf, (size_t)(st2.st_size - 8), 8); /* the record without header */
        close(fd);
        assert_int_equal(k, st2.st_size - 8);
        fd = open(path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, (size_t)k - 7), k - 7); /* torn: 7 bytes short */
        close(fd);
        tdir_rm(&d2);
    }
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    skipped = read_all(s, 0, 5);
    assert_true(skipped > 0);
    /* New appends go to a fresh segment and read back after the old one. */
    append_n(s, 5, 3);
    assert_int_equal(ias_spool_segments(s), 2);
    skipped = read_all(s, 0, 8);
    assert_true(skipped > 0);
    ias_spool_free(s);
    tdir_rm(&d);
}

static void test_corrupt_middle_resyncs(void **state)
{
    tdir d;
    ias_spool *s;
    char path[512];
    unsigned char b;
    int fd;
    uint64_t *ids;
    size_t n, count = 0;
    ias_spool_reader *r;
    ias_spool_rec rec;

    tdir_make(&d);
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    append_n(s, 0, 3);
    ias_spool_free(s);

    /* Flip one body byte of the first record: its CRC fails, the other two
     * are still found. */
    seg_file(d.path, 1, path, sizeof(path));
    fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &b, 1, 60), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, 60), 1);
    close(fd);

    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    assert_int_equal(ias_spool_list(s, &ids, &n), IAS_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ias_spool_reader_open(s, ids[0], &r), IAS_OK);
    while (ias_spool_reader_next(r, &rec) == IAS_OK) {
        char mid[64], body[128];
        ias_spool_rec want = mkrec((int)count + 1, mid, sizeof(mid), body, sizeof(body));
        assert_string_equal(rec.message_id, want.message_id);
        count++;
    }
    assert_int_equal(count, 2);
    assert_true(ias_spool_reader_skipped(r) > 0);
    ias_spool_reader_free(r);
    free(ids);
    ias_spool_free(s);
    tdir_rm(&d);
}

static void test_limits(void **state)
{
    tdir d;
    ias_spool *s, *s2;
    char big[300];
    char mid[64], body[128];
    ias_spool_rec r;

    tdir_make(&d);
    /* Cap of 1 KiB on the whole spool. */
    assert_int_equal(ias_spool_open(d.path, 0, 1024, &s), IAS_OK);
    /* A second owner of the same directory is refused. */
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s2), IAS_ERR);
    assert_null(s2);

    r = mkrec(1, mid, sizeof(mid), body, sizeof(body));
    memset(big, 'k', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    r.routing_key = big; /* over 255 bytes */
    assert_int_equal(ias_spool_append(s, &r, 1), IAS_ERR);
    r = mkrec(1, mid, sizeof(mid), body, sizeof(body));
    r.body_len = IAS_AMQP_BODY_MAX + 1;
    assert_int_equal(ias_spool_append(s, &r, 1), IAS_ERR);

    r = mkrec(1, mid, sizeof(mid), body, sizeof(body));
    for (int i = 0; i < 100; i++) {
        if (ias_spool_append(s, &r, 1) != IAS_OK) {
            assert_true(i > 3); /* some fit, then the cap bites */
            break;
        }
        assert_true(i < 99);
    }
    assert_true(ias_spool_bytes(s) <= 1024);
    ias_spool_free(s);
    /* Releasing the lock lets a new owner in. */
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s2), IAS_OK);
    {
        uint64_t *ids;
        size_t n;
        assert_int_equal(ias_spool_list(s2, &ids, &n), IAS_OK);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(ias_spool_remove(s2, ids[i]), IAS_OK);
        free(ids);
    }
    ias_spool_free(s2);
    tdir_rm(&d);
}

static void test_routing_keys(void **state)
{
    char buf[64];

    assert_int_equal(ias_amqp_audit_key(buf, sizeof(buf), "users", "api_key-created"), IAS_OK);
    assert_string_equal(buf, "audit.users.api_key-created");
    assert_int_equal(ias_amqp_audit_key(buf, sizeof(buf), "users", "a.b"), IAS_ERR);
    assert_int_equal(ias_amqp_audit_key(buf, sizeof(buf), "", "x"), IAS_ERR);
    assert_int_equal(ias_amqp_audit_key(buf, 8, "users", "login"), IAS_ERR);
    assert_int_equal(ias_amqp_config_key(buf, sizeof(buf), "keys"), IAS_OK);
    assert_string_equal(buf, "config.keys.changed");
    assert_int_equal(ias_amqp_config_key(buf, sizeof(buf), "Keys"), IAS_ERR);
    assert_int_equal(ias_amqp_config_key(buf, sizeof(buf), "#"), IAS_ERR);
}

/* With no broker, everything accepted ends up in the spool, fsync'd, in the
 * documented format, including events still queued at ias_publisher_free. */
static void test_publisher_spools_without_broker(void **state)
{
    tdir d;
    ias_publisher_opts o = {0};
    ias_publisher *p;
    ias_publisher_stats st;
    ias_spool *s;
    char mid[64], body[128];
    char big[300];
    const int N = 300;

    tdir_make(&d);
    o.url = "amqp://ias:ias@127.0.0.1:1/%2f"; /* nothing listens on port 1 */
    o.spool_dir = d.path;
    o.name = "unit";
    o.queue_capacity = 16; /* forces the producer-side spool path too */
    o.reconnect_min_ms = 50;
    o.reconnect_max_ms = 100;
    p = ias_publisher_new(&o);
    assert_non_null(p);
    for (int i = 0; i < N; i++) {
        ias_spool_rec r = mkrec(i, mid, sizeof(mid), body, sizeof(body));
        assert_int_equal(
            ias_publisher_publish(p, r.routing_key, r.message_id, r.type, r.body, r.body_len),
            IAS_OK);
    }
    /* Invalid input is refused, not spooled. */
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(ias_publisher_publish(p, big, "id", "t", "{}", 2), IAS_ERR);
    assert_int_equal(ias_publisher_publish(p, "usage.recorded", "", "t", "{}", 2), IAS_ERR);
    assert_int_equal(
        ias_publisher_publish(p, "usage.recorded", "id", "t", "{}", IAS_AMQP_BODY_MAX + 1),
        IAS_ERR);
    ias_publisher_stats_get(p, &st);
    assert_int_equal(st.published, N);
    assert_false(st.connected);
    assert_int_equal(ias_publisher_wait_idle(p, 50), IAS_AGAIN); /* spool not empty */
    ias_publisher_free(p);

    /* Every event is on disk exactly once (order is not guaranteed: the
     * overflow path can overtake the queue). */
    assert_int_equal(ias_spool_open(d.path, 0, 0, &s), IAS_OK);
    {
        uint64_t *ids;
        size_t n;
        int *seen = calloc((size_t)N, sizeof(int));
        int total = 0;
        assert_non_null(seen);
        assert_int_equal(ias_spool_list(s, &ids, &n), IAS_OK);
        assert_true(n >= 1);
        for (size_t k = 0; k < n; k++) {
            ias_spool_reader *r;
            ias_spool_rec rec;
            assert_int_equal(ias_spool_reader_open(s, ids[k], &r), IAS_OK);
            while (ias_spool_reader_next(r, &rec) == IAS_OK) {
                int i = atoi(rec.message_id + 24);
                ias_spool_rec want = mkrec(i, mid, sizeof(mid), body, sizeof(body));
                assert_true(i >= 0 && i < N);
                assert_string_equal(rec.message_id, want.message_id);
                assert_string_equal(rec.routing_key, want.routing_key);
                assert_string_equal(rec.type, want.type);
                assert_int_equal(rec.body_len, want.body_len);
                assert_memory_equal(rec.body, want.body, want.body_len);
                seen[i]++;
                total++;
            }
            assert_int_equal(ias_spool_reader_skipped(r), 0);
            ias_spool_reader_free(r);
            assert_int_equal(ias_spool_remove(s, ids[k]), IAS_OK);
        }
        free(ids);
        assert_int_equal(total, N);
        for (int i = 0; i < N; i++)
            assert_int_equal(seen[i], 1);
        free(seen);
    }
    ias_spool_free(s);
    tdir_rm(&d);
}

/* Connection errors are clear and never echo the password (no broker needed). */
static void test_connect_errors(void **state)
{
    ias_amqp_conn_opts o = {.url = "http://nope"};
    ias_amqp_conn *c = (ias_amqp_conn *)1;
    char err[300];

    assert_int_equal(ias_amqp_connect(&o, &c, err, sizeof(err)), IAS_ERR);
    assert_null(c);
    assert_non_null(strstr(err, "URL"));
    o.url = "amqps://u:p@127.0.0.1:1/";
    assert_int_equal(ias_amqp_connect(&o, &c, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "amqps"));
    o.url = "amqp://ias:secretpw@127.0.0.1:1/%2f";
    assert_int_equal(ias_amqp_connect(&o, &c, err, sizeof(err)), IAS_ERR);
    assert_non_null(strstr(err, "127.0.0.1:1"));
    assert_null(strstr(err, "secretpw"));
    assert_int_equal(ias_amqp_connect(NULL, &c, err, sizeof(err)), IAS_ERR);
    ias_amqp_conn_free(NULL);
    assert_false(ias_amqp_conn_ok(NULL));
}

static void test_publisher_bad_opts(void **state)
{
    ias_publisher_opts o = {0};

    assert_null(ias_publisher_new(NULL));
    assert_null(ias_publisher_new(&o));
    o.url = "amqp://127.0.0.1:1/";
    assert_null(ias_publisher_new(&o)); /* no spool_dir */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32_vector),
        cmocka_unit_test(test_roundtrip_and_format),
        cmocka_unit_test(test_batch_append_and_rotation),
        cmocka_unit_test(test_append_nosync),
        cmocka_unit_test(test_torn_tail_ignored),
        cmocka_unit_test(test_corrupt_middle_resyncs),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_routing_keys),
        cmocka_unit_test(test_publisher_spools_without_broker),
        cmocka_unit_test(test_connect_errors),
        cmocka_unit_test(test_publisher_bad_opts),
    };

    ias_log_init("test_amqp_spool", IAS_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
