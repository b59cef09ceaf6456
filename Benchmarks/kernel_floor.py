#!/usr/bin/env python3
"""The kernel's share of a publish+unpublish pair, without the driver: the system
calls a pod volume cannot do without, made from Python, timed by this process's
own kernel time (getrusage ru_stime; Python's own work is user time and does not
count).

    python Benchmarks/kernel_floor.py [--dir /tmp] [--cycles 3000] [--repeat 3]

One cycle: mkdir the target, mount a tmpfs there (nosuid, nodev, noexec, size
limit), write 3 files of 256 bytes the way kubelet's atomic writer does (a
timestamped directory, each file created, written and given its mode, the
`..data` link made and renamed into place, one link per file), then umount and
rmdir. That is what any driver, ours or upstream's, asks of the kernel for one
volume; the driver's CPU per pair (`make pair-cost`, e-cpu-pair in `make bench`)
can go no lower than this on the same file system. Run it on the file system the
kubelet root is on (--dir). Needs root.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import resource
import tempfile

MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8
MNT_DETACH = 2

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def cycle(parent: str, i: int, payload: bytes) -> None:
    target = f"{parent}/vol"
    os.mkdir(target, 0o750)
    check(libc.mount(b"floor", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     b"size=16m,mode=0755"), "mount")
    root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
    version = f"..2026_12_03_00_00_00.{i}"
    os.mkdir(version, 0o755, dir_fd=root)
    vfd = os.open(version, os.O_RDONLY | os.O_DIRECTORY, dir_fd=root)
    for name in ("a", "b", "c"):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=vfd)
        os.write(fd, payload)
        os.fchmod(fd, 0o644)
        os.close(fd)
    os.close(vfd)
    os.symlink(version, "..data_tmp", dir_fd=root)
    os.rename("..data_tmp", "..data", src_dir_fd=root, dst_dir_fd=root)
    for name in ("a", "b", "c"):
        os.symlink(f"..data/{name}", name, dir_fd=root)
    os.close(root)
    check(libc.umount2(target.encode(), MNT_DETACH), "umount2")
    os.rmdir(target)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp", help="file system of the targets (the kubelet root's)")
    ap.add_argument("--cycles", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    parent = tempfile.mkdtemp(prefix="kernel-floor-", dir=opts.dir)
    payload = os.urandom(256)
    try:
        for i in range(200):
            cycle(parent, i, payload)
        per = []
        for _ in range(opts.repeat):
            t0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
            for i in range(opts.cycles):
                cycle(parent, i, payload)
            per.append((resource.getrusage(resource.RUSAGE_SELF).ru_stime - t0) * 1e6 / opts.cycles)
        print(f"kernel time per publish+unpublish pair on {opts.dir} ({opts.cycles} cycles x {opts.repeat}): "
              + ", ".join(f"{v:.0f}" for v in per) + f" µs; median {sorted(per)[len(per) // 2]:.0f} µs")
    finally:
        os.rmdir(parent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
