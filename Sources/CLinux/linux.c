#define _GNU_SOURCE
#include "CLinux.h"
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <linux/openat2.h>
#include <limits.h>
#include <sys/stat.h>

int clinux_unshare(int flags) { return unshare(flags); }
int clinux_clone_newns(void) { return CLONE_NEWNS; }

// Without openat2 (ENOSYS: Linux before 5.6, or a tool such as valgrind that does not
// know the call): the same rule, one element at a time. Each element is opened relative
// to the previous descriptor with O_NOFOLLOW, so no symlink (magic links included) is
// ever followed; "", "." and ".." and an absolute path are refused, so the walk can only
// go down from `dirfd`. A symlink swapped in between two steps is refused by the next step.
int clinux_openat_beneath_walk(int dirfd, const char *path, int flags, mode_t mode) {
    if (path[0] == '/') { errno = EXDEV; return -1; }
    size_t len = strlen(path);
    if (len == 0 || len >= PATH_MAX) { errno = len ? ENAMETOOLONG : ENOENT; return -1; }
    char buf[PATH_MAX];
    memcpy(buf, path, len + 1);
    int cur = dirfd;
    char *element = buf;
    for (;;) {
        char *slash = strchr(element, '/');
        if (slash) *slash = 0;
        if (element[0] == 0 || strcmp(element, ".") == 0 || strcmp(element, "..") == 0) {
            if (cur != dirfd) close(cur);
            errno = EXDEV;
            return -1;
        }
        int fd;
        if (slash) {
            fd = openat(cur, element, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0 && errno == ENOTDIR) {
                // A symlink where a directory was expected reads as ENOTDIR: say ELOOP,
                // as openat2 with RESOLVE_NO_SYMLINKS would.
                struct stat st;
                if (fstatat(cur, element, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) errno = ELOOP;
                else errno = ENOTDIR;
            }
        } else {
            fd = openat(cur, element, flags | O_NOFOLLOW, (flags & O_CREAT) ? mode : 0);
            if (fd < 0 && errno == ENOTDIR) {
                struct stat st;
                if (fstatat(cur, element, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) errno = ELOOP;
                else errno = ENOTDIR;
            }
            if (fd >= 0 && (flags & O_PATH)) {
                // O_PATH | O_NOFOLLOW opens a symlink itself instead of failing.
                struct stat st;
                if (fstat(fd, &st) != 0 || S_ISLNK(st.st_mode)) { close(fd); fd = -1; errno = ELOOP; }
            }
        }
        int saved = errno;
        if (cur != dirfd) close(cur);
        errno = saved;
        if (fd < 0) return -1;
        if (!slash) return fd;
        cur = fd;
        element = slash + 1;
    }
}

static int openat2_missing = 0;

int clinux_openat2_beneath(int dirfd, const char *path, int flags, mode_t mode) {
    if (!__atomic_load_n(&openat2_missing, __ATOMIC_RELAXED)) {
        struct open_how how;
        memset(&how, 0, sizeof how);
        how.flags = (unsigned long long)flags;
        how.mode = (flags & O_CREAT) ? mode : 0;
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
        int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
        if (fd >= 0 || errno != ENOSYS) return fd;
        __atomic_store_n(&openat2_missing, 1, __ATOMIC_RELAXED);
    }
    return clinux_openat_beneath_walk(dirfd, path, flags, mode);
}

int clinux_openat2_within(int dirfd, const char *path, int flags) {
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (unsigned long long)flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

int clinux_is_socket(const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return -1;
    return S_ISSOCK(st.st_mode) ? 1 : 0;
}

ssize_t clinux_getdents64(int fd, void *buf, size_t n) {
    return (ssize_t)syscall(SYS_getdents64, fd, buf, n);
}

int clinux_is_mount_root(const char *path) {
    struct statx stx;
    if (statx(AT_FDCWD, path, 0, STATX_BASIC_STATS, &stx) != 0) {
        return (errno == ENOENT || errno == ENOTDIR) ? 0 : -1;
    }
    if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) return -2;
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

long clinux_fs_magic(int fd) {
    struct statfs st;
    if (fstatfs(fd, &st) != 0) return -1;
    return (long)st.f_type;
}

int clinux_is_mount_root_at(int dirfd, const char *name) {
    struct statx stx;
    int flags = (name[0] == 0) ? AT_EMPTY_PATH : AT_SYMLINK_NOFOLLOW;
    if (statx(dirfd, name, flags | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) != 0) return -1;
    if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) return -2;
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
}

int clinux_entry_state_at(int dirfd, const char *name) {
    struct statx stx;
    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT, STATX_TYPE, &stx) != 0) {
        return errno == ENOENT ? 0 : -1;
    }
    int state = S_ISDIR(stx.stx_mode) ? CLINUX_ENTRY_DIRECTORY
              : S_ISLNK(stx.stx_mode) ? CLINUX_ENTRY_SYMLINK : CLINUX_ENTRY_OTHER;
    if (!(stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)) return state | CLINUX_ENTRY_MOUNT_UNKNOWN;
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? (state | CLINUX_ENTRY_MOUNT_ROOT) : state;
}

void clinux_explicit_bzero(void *p, size_t n) {
    if (p && n) explicit_bzero(p, n);
}

int clinux_o_path(void) { return O_PATH; }
