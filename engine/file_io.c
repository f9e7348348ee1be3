/* file_io: whole-file reads and atomic writes. See file_io.h. */
#include "engine/file_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "engine/util.h"

int file_io_open_regular(const char *path, char *err, size_t errlen)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
     * writer, for ever. Reads of a regular file ignore it; it is cleared
     * anyway so that callers see an ordinary descriptor. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        util_set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        util_set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        util_set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

vae_status file_io_read_all(const char *path, size_t max, uint8_t **out, size_t *len, char *err,
                         size_t errlen)
{
    *out = NULL;
    *len = 0;
    int fd = file_io_open_regular(path, err, errlen);
    if (fd < 0)
        return VAE_ERR_IO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        util_set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return VAE_ERR_IO;
    }
    if ((uint64_t)st.st_size > max) {
        util_set_err(err, errlen, "%s: %lld bytes is more than the %zu allowed", path,
                (long long)st.st_size, max);
        close(fd);
        return VAE_ERR_TOO_LARGE;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1); /* owned: handed to *out */
    if (!buf) {
        util_set_err(err, errlen, "%s: out of memory (%zu bytes)", path, n);
        close(fd);
        return VAE_ERR_NOMEM;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            util_set_err(err, errlen, "%s: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return VAE_ERR_IO;
        }
        if (r == 0) break; /* shrank while we read: take what is there */
        got += (size_t)r;
    }
    close(fd);
    *out = buf;
    *len = got;
    return VAE_OK;
}

/* A temporary name of 12 random hex digits: unique across processes and
 * restarts (a PID and a counter are not: in a container the daemon is
 * always PID 1, and a file a crash left behind would block a later save). */
static void tmp_suffix(char out[13])
{
    uint8_t r[6];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        static unsigned long counter;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t v = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^
                     ((uint64_t)getpid() << 40) ^
                     __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED) * 0x9e3779b97f4a7c15ull;
        memcpy(r, &v, sizeof r);
    }
    for (int i = 0; i < 6; i++)
        snprintf(out + 2 * i, 3, "%02x", r[i]);
}

int file_io_is_temp_name(const char *name)
{
    const char *at = strstr(name, FILE_IO_TEMP_MARK);
    if (!at || at == name)
        return 0;
    const char *rest = at + strlen(FILE_IO_TEMP_MARK);
    /* this module's "<12 hex>", or the "<pid>.<n>" of earlier versions */
    return *rest && strspn(rest, "0123456789abcdef.") == strlen(rest);
}

vae_status file_io_remove_stale_temps(const char *dir, int *removed, char *err, size_t errlen)
{
    if (removed)
        *removed = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT)
            return VAE_OK;
        util_set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return VAE_ERR_IO;
    }
    vae_status rc = VAE_OK;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!file_io_is_temp_name(e->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (unlinkat(dirfd(d), e->d_name, 0) != 0) {
            util_set_err(err, errlen, "%s/%s: %s", dir, e->d_name, strerror(errno));
            rc = VAE_ERR_IO;
        } else if (removed) {
            (*removed)++;
        }
    }
    closedir(d);
    return rc;
}

vae_status file_io_write_atomic(const char *path, const uint8_t *buf, size_t len, char *err,
                             size_t errlen)
{
    if (!path || !path[0] || (!buf && len)) {
        util_set_err(err, errlen, "file_io_write_atomic: invalid arguments");
        return VAE_ERR_ARG;
    }
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64); /* owned here */
    char *dir = malloc(plen + 2);  /* owned here */
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        util_set_err(err, errlen, "out of memory");
        return VAE_ERR_NOMEM;
    }
    char suffix[13];
    const char *slash = strrchr(path, '/');
    if (!slash) strcpy(dir, ".");
    else if (slash == path) strcpy(dir, "/");
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }

    vae_status rc = VAE_OK;
    int fd = -1;
    for (int attempt = 0; attempt < 8 && fd < 0; attempt++) {
        tmp_suffix(suffix);
        snprintf(tmp, plen + 64, "%s" FILE_IO_TEMP_MARK "%s", path, suffix);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    if (fd < 0) {
        util_set_err(err, errlen, "%s: %s", tmp, strerror(errno));
        rc = VAE_ERR_IO;
        goto end;
    }
    for (size_t done = 0; done < len;) {
        ssize_t w = write(fd, buf + done, len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            util_set_err(err, errlen, "%s: write: %s", tmp, strerror(errno));
            rc = VAE_ERR_IO;
            break;
        }
        done += (size_t)w;
    }
    if (!rc && fsync(fd) != 0) {
        util_set_err(err, errlen, "%s: fsync: %s", tmp, strerror(errno));
        rc = VAE_ERR_IO;
    }
    if (close(fd) != 0 && !rc) {
        util_set_err(err, errlen, "%s: close: %s", tmp, strerror(errno));
        rc = VAE_ERR_IO;
    }
    if (!rc && rename(tmp, path) != 0) {
        util_set_err(err, errlen, "rename %s -> %s: %s", tmp, path, strerror(errno));
        rc = VAE_ERR_IO;
    }
    if (rc) {
        unlink(tmp);
        goto end;
    }
    /* Make the rename itself durable. Filesystems that cannot sync a
     * directory say EINVAL; the data is in place, so that is not an error. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        if (fsync(dfd) != 0 && errno != EINVAL) {
            util_set_err(err, errlen, "%s: fsync of directory: %s", dir, strerror(errno));
            rc = VAE_ERR_IO;
        }
        close(dfd);
    }
end:
    free(tmp);
    free(dir);
    return rc;
}

vae_status file_io_make_dirs(const char *dir, char *err, size_t errlen)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", dir) >= (int)sizeof buf) {
        util_set_err(err, errlen, "%.64s...: path too long", dir);
        return VAE_ERR_IO;
    }
    for (char *p = buf + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST) {
            util_set_err(err, errlen, "cannot create %s: %s", buf, strerror(errno));
            return VAE_ERR_IO;
        }
        *p = saved;
        if (!saved)
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        util_set_err(err, errlen, "%s is not a directory", dir);
        return VAE_ERR_IO;
    }
    return VAE_OK;
}
