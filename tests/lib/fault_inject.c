/* fault_inject: the daemon's side of tests/lib/fault.h, linked only into
 * BUILD/tests/vaed_fault with -Wl,--wrap=... (so not with the other test
 * objects of tests/lib, which every test binary links). */
#include "tests/lib/fault.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>
#include <sqlite3.h>

void *__real_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
char *__real_strdup(const char *s);
ssize_t __real_write(int fd, const void *buf, size_t n);
int __real_fsync(int fd);
int __real_rename(const char *from, const char *to);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
char *__wrap_strdup(const char *s);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
int __wrap_fsync(int fd);
int __wrap_rename(const char *from, const char *to);

/* ---- when to fail --------------------------------------------------------- */

static atomic_int armed_kind;      /* fault_kind; FAULT_NONE: nothing fails */
static _Atomic int64_t armed_n;
static _Atomic int64_t seen_calls;
static _Atomic int64_t seen_fired;

static int should_fail(fault_kind k)
{
    int a = atomic_load(&armed_kind);
    if (a == FAULT_NONE)
        return 0;
    if (a != (int)k)
        return 0;
    int64_t call = atomic_fetch_add(&seen_calls, 1) + 1;
    if (call == atomic_load(&armed_n)) {
        atomic_fetch_add(&seen_fired, 1);
        return 1;
    }
    return 0;
}

static void arm(fault_kind kind, int64_t n)
{
    atomic_store(&armed_kind, FAULT_NONE);
    atomic_store(&seen_calls, 0);
    atomic_store(&seen_fired, 0);
    atomic_store(&armed_n, n);
    atomic_store(&armed_kind, kind);
}

/* ---- the wrapped calls ---------------------------------------------------- */

void *__wrap_malloc(size_t size)
{
    if (should_fail(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (should_fail(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
    if (should_fail(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, size);
}

char *__wrap_strdup(const char *s)
{
    if (should_fail(FAULT_ALLOC)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    if (should_fail(FAULT_WRITE)) {
        errno = ENOSPC;
        return -1;
    }
    return __real_write(fd, buf, n);
}

int __wrap_fsync(int fd)
{
    if (should_fail(FAULT_FSYNC)) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_rename(const char *from, const char *to)
{
    if (should_fail(FAULT_RENAME)) {
        errno = EIO;
        return -1;
    }
    return __real_rename(from, to);
}

/* cJSON's allocations (its library is not linked with --wrap). */
static void *cjson_malloc(size_t size)
{
    return __wrap_malloc(size);
}

/* ---- SQLite: its allocator and a VFS over the real one -------------------- */

static sqlite3_mem_methods sqlite_mem; /* the default allocator */

static void *sqlite_malloc(int n)
{
    return should_fail(FAULT_ALLOC) ? NULL : sqlite_mem.xMalloc(n);
}

static void *sqlite_realloc(void *p, int n)
{
    return should_fail(FAULT_ALLOC) ? NULL : sqlite_mem.xRealloc(p, n);
}

static void sqlite_free(void *p)
{
    sqlite_mem.xFree(p);
}

static int sqlite_size(void *p)
{
    return sqlite_mem.xSize(p);
}

static int sqlite_roundup(int n)
{
    return sqlite_mem.xRoundup(n);
}

static int sqlite_init(void *app)
{
    return sqlite_mem.xInit(app);
}

static void sqlite_shutdown(void *app)
{
    sqlite_mem.xShutdown(app);
}

static sqlite3_vfs *real_vfs; /* the default VFS before ours ("unix") */
static sqlite3_vfs fault_vfs;

typedef struct {
    sqlite3_file base;   /* pMethods = &fault_io */
    sqlite3_file *real;  /* right after this struct, real_vfs->szOsFile bytes */
} fault_file;

#define REAL(f) (((fault_file *)(f))->real)

static int f_close(sqlite3_file *f)
{
    return REAL(f)->pMethods->xClose(REAL(f));
}

static int f_read(sqlite3_file *f, void *buf, int n, sqlite3_int64 off)
{
    return REAL(f)->pMethods->xRead(REAL(f), buf, n, off);
}

static int f_write(sqlite3_file *f, const void *buf, int n, sqlite3_int64 off)
{
    if (should_fail(FAULT_WRITE))
        return SQLITE_FULL;
    return REAL(f)->pMethods->xWrite(REAL(f), buf, n, off);
}

static int f_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return REAL(f)->pMethods->xTruncate(REAL(f), size);
}

static int f_sync(sqlite3_file *f, int flags)
{
    if (should_fail(FAULT_FSYNC))
        return SQLITE_IOERR_FSYNC;
    return REAL(f)->pMethods->xSync(REAL(f), flags);
}

static int f_file_size(sqlite3_file *f, sqlite3_int64 *size)
{
    return REAL(f)->pMethods->xFileSize(REAL(f), size);
}

static int f_lock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xLock(REAL(f), level);
}

static int f_unlock(sqlite3_file *f, int level)
{
    return REAL(f)->pMethods->xUnlock(REAL(f), level);
}

static int f_check_reserved(sqlite3_file *f, int *out)
{
    return REAL(f)->pMethods->xCheckReservedLock(REAL(f), out);
}

static int f_file_control(sqlite3_file *f, int op, void *arg)
{
    return REAL(f)->pMethods->xFileControl(REAL(f), op, arg);
}

static int f_sector_size(sqlite3_file *f)
{
    return REAL(f)->pMethods->xSectorSize(REAL(f));
}

static int f_device_characteristics(sqlite3_file *f)
{
    return REAL(f)->pMethods->xDeviceCharacteristics(REAL(f));
}

static int f_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return REAL(f)->pMethods->xShmMap(REAL(f), page, size, extend, out);
}

static int f_shm_lock(sqlite3_file *f, int offset, int n, int flags)
{
    return REAL(f)->pMethods->xShmLock(REAL(f), offset, n, flags);
}

static void f_shm_barrier(sqlite3_file *f)
{
    REAL(f)->pMethods->xShmBarrier(REAL(f));
}

static int f_shm_unmap(sqlite3_file *f, int delete_flag)
{
    return REAL(f)->pMethods->xShmUnmap(REAL(f), delete_flag);
}

static int f_fetch(sqlite3_file *f, sqlite3_int64 off, int n, void **out)
{
    return REAL(f)->pMethods->xFetch(REAL(f), off, n, out);
}

static int f_unfetch(sqlite3_file *f, sqlite3_int64 off, void *p)
{
    return REAL(f)->pMethods->xUnfetch(REAL(f), off, p);
}

static const sqlite3_io_methods fault_io = {
    3,           f_close,       f_read,        f_write,       f_truncate,
    f_sync,      f_file_size,   f_lock,        f_unlock,      f_check_reserved,
    f_file_control, f_sector_size, f_device_characteristics, f_shm_map, f_shm_lock,
    f_shm_barrier, f_shm_unmap, f_fetch,       f_unfetch,
};

static int vfs_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags,
                    int *out_flags)
{
    (void)vfs;
    fault_file *f = (fault_file *)file;
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    /* SQLite closes a file only when its pMethods is set. */
    f->base.pMethods = rc == SQLITE_OK && f->real->pMethods ? &fault_io : NULL;
    return rc;
}

static void install_sqlite(void)
{
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &sqlite_mem) == SQLITE_OK) {
        sqlite3_mem_methods m = {sqlite_malloc, sqlite_free, sqlite_realloc, sqlite_size,
                                 sqlite_roundup, sqlite_init, sqlite_shutdown, NULL};
        sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
    }
    real_vfs = sqlite3_vfs_find(NULL);
    if (!real_vfs)
        return;
    /* The real VFS's other methods ignore which VFS they are called through. */
    fault_vfs = *real_vfs;
    fault_vfs.zName = "fault";
    fault_vfs.szOsFile = (int)sizeof(fault_file) + real_vfs->szOsFile;
    fault_vfs.xOpen = vfs_open;
    fault_vfs.pNext = NULL;
    sqlite3_vfs_register(&fault_vfs, 1);
}

/* ---- control: VAED_FAULT at start, VAED_FAULT_CTL with SIGUSR1 ------------ */

static char ctl_path[512], ack_path[520], ack_tmp[528];

const char *fault_kind_name(fault_kind k);

/* One number of "KIND N" (kind by name) or of the control line "SEQ K N". */
static int parse_i64(const char **p, int64_t *out)
{
    while (**p == ' ')
        (*p)++;
    int64_t v = 0;
    int digits = 0;
    while (**p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        (*p)++;
        digits++;
    }
    *out = v;
    return digits ? 0 : -1;
}

static size_t put_i64(char *out, int64_t v)
{
    char rev[24];
    size_t n = 0, len = 0;
    if (v < 0)
        v = 0;
    do {
        rev[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        out[len++] = rev[--n];
    return len;
}

/* Async-signal-safe: open, read, write, close, rename and atomics only. */
static void on_sigusr1(int sig)
{
    (void)sig;
    int saved_errno = errno;
    char line[128];
    int fd = open(ctl_path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, line, sizeof line - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n > 0) {
        line[n] = '\0';
        const char *p = line;
        int64_t seq, kind = 0, count = 0;
        if (!parse_i64(&p, &seq)) {
            parse_i64(&p, &kind);
            parse_i64(&p, &count);
            int64_t fired = atomic_load(&seen_fired), calls = atomic_load(&seen_calls);
            if (kind > FAULT_NONE && kind < FAULT_KIND_COUNT && count > 0)
                arm((fault_kind)kind, count);
            else
                arm(FAULT_NONE, 0);
            char ack[80];
            size_t len = put_i64(ack, seq);
            ack[len++] = ' ';
            len += put_i64(ack + len, fired);
            ack[len++] = ' ';
            len += put_i64(ack + len, calls);
            ack[len++] = '\n';
            fd = open(ack_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
            if (fd >= 0) {
                __real_write(fd, ack, len);
                close(fd);
                __real_rename(ack_tmp, ack_path);
            }
        }
    }
    errno = saved_errno;
}

__attribute__((constructor)) static void fault_install(void)
{
    install_sqlite();
    cJSON_Hooks hooks = {cjson_malloc, free};
    cJSON_InitHooks(&hooks);
    const char *ctl = getenv("VAED_FAULT_CTL");
    if (ctl && *ctl && strlen(ctl) < sizeof ctl_path) {
        strcpy(ctl_path, ctl);
        strcpy(ack_path, ctl);
        strcat(ack_path, ".ack");
        strcpy(ack_tmp, ctl);
        strcat(ack_tmp, ".ack.tmp");
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigusr1;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGUSR1, &sa, NULL);
    }
    const char *start = getenv("VAED_FAULT"); /* "alloc 37" */
    if (start && *start) {
        for (int k = FAULT_ALLOC; k < FAULT_KIND_COUNT; k++) {
            size_t len = strlen(fault_kind_name((fault_kind)k));
            if (!strncmp(start, fault_kind_name((fault_kind)k), len) && start[len] == ' ') {
                const char *p = start + len;
                int64_t n;
                if (!parse_i64(&p, &n) && n > 0)
                    arm((fault_kind)k, n);
            }
        }
    }
}
