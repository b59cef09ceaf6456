#ifndef CLINUX_H
#define CLINUX_H
#include <stddef.h>
#include <sys/types.h>
#include <sys/stat.h>

// Linux calls that Swift's Glibc module does not expose (needs _GNU_SOURCE).
int clinux_unshare(int flags);
int clinux_clone_newns(void);
// openat2(2) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: the walk
// may not leave `dirfd` (EXDEV), may not pass a symlink anywhere in `path` (ELOOP), and
// `mode` is used only with O_CREAT. -1 and errno on failure. Where the kernel (or a tool
// such as valgrind) lacks openat2, the same rule is kept by clinux_openat_beneath_walk.
int clinux_openat2_beneath(int dirfd, const char *path, int flags, mode_t mode);
// The fallback: one element at a time with openat(O_NOFOLLOW), never "", ".", ".." or an
// absolute path (EXDEV), never a symlink (ELOOP). Exposed for tests.
int clinux_openat_beneath_walk(int dirfd, const char *path, int flags, mode_t mode);
// openat2 with RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS: symlinks are followed but the
// walk may never leave `dirfd` (an escape fails with EXDEV); -1 and errno on failure.
int clinux_openat2_within(int dirfd, const char *path, int flags);
int clinux_is_socket(const char *path);
// getdents64(2): raw directory entries (struct linux_dirent64) into buf; -1 and errno on failure.
// Used instead of fdopendir/readdir, which cost three extra syscalls per directory.
ssize_t clinux_getdents64(int fd, void *buf, size_t n);
// Whether `path` (symlinks followed) is the root of a mount, from statx's
// STATX_ATTR_MOUNT_ROOT: 1 yes, 0 no (or no such path), -2 the kernel cannot
// tell (before Linux 5.8), -1 error (errno set). No mount-table scan.
int clinux_is_mount_root(const char *path);
// fstatfs(2)'s f_type (the file system's magic number, e.g. 0x01021994 for tmpfs) of
// the file system holding the open file `fd`; -1 and errno on failure.
long clinux_fs_magic(int fd);
// statx(fd, "", AT_EMPTY_PATH) or statx(dirfd, name, AT_SYMLINK_NOFOLLOW): whether the
// object is the root of a mount (STATX_ATTR_MOUNT_ROOT). 1 yes, 0 no, -2 the kernel cannot
// tell (before Linux 5.8), -1 error (errno set; ENOENT when `name` does not exist).
int clinux_is_mount_root_at(int dirfd, const char *name);
// One statx(dirfd, name, AT_SYMLINK_NOFOLLOW) answering what `name` is and whether it is
// the root of a mount: CLINUX_ENTRY_* for the type (never followed) plus
// CLINUX_ENTRY_MOUNT_ROOT when it is a mount root, CLINUX_ENTRY_MOUNT_UNKNOWN when the
// kernel cannot tell (before Linux 5.8). 0 when it does not exist, -1 error (errno set).
#define CLINUX_ENTRY_DIRECTORY 1
#define CLINUX_ENTRY_SYMLINK 2
#define CLINUX_ENTRY_OTHER 3
#define CLINUX_ENTRY_TYPE_MASK 3
#define CLINUX_ENTRY_MOUNT_ROOT 4
#define CLINUX_ENTRY_MOUNT_UNKNOWN 8
int clinux_entry_state_at(int dirfd, const char *name);
// O_PATH (a _GNU_SOURCE flag Swift's Glibc module does not expose).
int clinux_o_path(void);
// Zeroes n bytes at p in a way the compiler may not drop as a dead store.
void clinux_explicit_bzero(void *p, size_t n);
// SHA-256 of `length` bytes at `data` into `digest` (sha256.c).
void clinux_sha256(const void *data, size_t length, unsigned char digest[32]);
#endif
