#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAGIC "blockhub-market-checkpoint 1\n"

static int
write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Make the rename itself durable. */
static void
sync_dir(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    int fd = open(dirname(buf), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

size_t
bh_market_checkpoint_format(char *buf, size_t size, const struct bh_market_checkpoint *c)
{
    int n = snprintf(
        buf, size,
        MAGIC "dev=%llu\nino=%llu\nsize=%llu\noffset=%llu\nrow=%lld\nline=%lld\nfile=%s\n",
        (unsigned long long)c->dev, (unsigned long long)c->ino, (unsigned long long)c->size,
        (unsigned long long)c->offset, (long long)c->row, (long long)c->line, c->file);
    return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

int
bh_market_checkpoint_write(const char *path, const struct bh_market_checkpoint *c)
{
    char tmp[PATH_MAX], text[NAME_MAX * 4 + 256];
    int fd = -1, rc;
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    n = (int)bh_market_checkpoint_format(text, sizeof(text), c);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, text, (size_t)n);
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0)
        unlink(tmp);
    else
        sync_dir(path);
    return rc;
}

int
bh_market_checkpoint_read(const char *path, struct bh_market_checkpoint *c)
{
    char text[NAME_MAX * 4 + 256];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? -ENOENT : -errno;
    ssize_t n = read(fd, text, sizeof(text) - 1);
    close(fd);
    if (n < 0)
        return -EINVAL;
    return bh_market_checkpoint_parse(text, (size_t)n, c);
}

int
bh_market_checkpoint_parse(const char *buf, size_t len, struct bh_market_checkpoint *c)
{
    char text[NAME_MAX * 4 + 256];
    if (len >= sizeof(text))
        return -EINVAL;
    memcpy(text, buf, len);
    text[len] = '\0';
    memset(c, 0, sizeof(*c));
    unsigned long long dev, ino, size, offset;
    long long row, line;
    int used = 0;
    if (strncmp(text, MAGIC, strlen(MAGIC)) != 0 ||
        sscanf(text + strlen(MAGIC),
               "dev=%llu\nino=%llu\nsize=%llu\noffset=%llu\nrow=%lld\nline=%lld\nfile=%n", &dev,
               &ino, &size, &offset, &row, &line, &used) != 6 ||
        used == 0)
        return -EINVAL;
    const char *name = text + strlen(MAGIC) + used;
    const char *end = strchr(name, '\n');
    len = end ? (size_t)(end - name) : 0;
    if (end == NULL || len == 0 || len >= sizeof(c->file) || offset > size || row < 0 || line < 0)
        return -EINVAL;
    memcpy(c->file, name, len);
    c->dev = dev;
    c->ino = ino;
    c->size = size;
    c->offset = offset;
    c->row = row;
    c->line = line;
    return 0;
}
