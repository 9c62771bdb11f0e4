/* Secrets from the terminal (echo off) or from stdin (one line), so passwords
 * need not appear on the command line or in the shell history. */
#include "admin.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

static void wipe(char *buf, size_t len)
{
    for (volatile char *p = buf; len > 0; len--)
        *p++ = '\0';
}

/* Reads one line from fd (without the newline). IAS_ERR on EOF before any
 * byte, on a read error or when the line does not fit. */
static int read_line(int fd, char *buf, size_t len)
{
    size_t n = 0;
    bool got = false;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got = true;
        if (c == '\n')
            break;
        if (n + 1 >= len) {
            wipe(buf, len);
            return IAS_ERR;
        }
        buf[n++] = c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return got ? IAS_OK : IAS_ERR;
}

static int read_tty(int fd, const char *prompt, char *buf, size_t len)
{
    struct termios old, quiet;
    int rc;

    if (tcgetattr(fd, &old) != 0)
        return IAS_ERR;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    /* Echo off before the prompt appears, so nothing typed after seeing it
     * can be echoed or flushed away. */
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        return IAS_ERR;
    if (write(fd, prompt, strlen(prompt)) < 0) {
        (void)tcsetattr(fd, TCSANOW, &old);
        return IAS_ERR;
    }
    rc = read_line(fd, buf, len);
    if (tcsetattr(fd, TCSANOW, &old) != 0)
        rc = IAS_ERR;
    return rc;
}

int admin_read_secret(const char *prompt, bool from_stdin, bool confirm, char *buf, size_t len)
{
    if (from_stdin || !isatty(STDIN_FILENO)) {
        if (read_line(STDIN_FILENO, buf, len) != IAS_OK || buf[0] == '\0') {
            fprintf(stderr, "ias-admin: no secret on stdin (one line, at most %zu bytes)\n",
                    len - 1);
            return IAS_ERR;
        }
        return IAS_OK;
    }
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        fd = STDIN_FILENO;
    int rc = read_tty(fd, prompt, buf, len);
    if (rc == IAS_OK && confirm) {
        char again[ADMIN_SECRET_MAX];
        rc = read_tty(fd, "Repeat: ", again, sizeof(again));
        if (rc == IAS_OK && strcmp(again, buf) != 0) {
            fprintf(stderr, "ias-admin: the two entries differ\n");
            rc = IAS_ERR;
        }
        wipe(again, sizeof(again));
    }
    if (fd != STDIN_FILENO)
        close(fd);
    if (rc != IAS_OK || buf[0] == '\0') {
        wipe(buf, len);
        fprintf(stderr, "ias-admin: no password entered\n");
        return IAS_ERR;
    }
    return IAS_OK;
}
