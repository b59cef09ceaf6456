"""What the benchmark scripts share: printing, starting and stopping the processes they
measure, and cleaning up the mounts they leave.

The scripts run as `python3 Benchmarks/<script>.py`, so this directory is on sys.path and
they import it as `benchlib`. Errors that end a run name the script (`prefix`).
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path


def say(msg: str = "") -> None:
    print(msg, flush=True)


def is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def wait_socket(path: Path, proc: subprocess.Popen, what: str, *, prefix: str = "", timeout: float = 30) -> None:
    """Waits until `proc` (`what`) has made its socket file; ends the run if it exits first
    or the file is not there after `timeout` seconds."""
    for _ in range(round(timeout / 0.05)):
        if path.is_socket():
            return
        if proc.poll() is not None:
            raise SystemExit(f"{prefix}{what} exited with {proc.returncode}")
        time.sleep(0.05)
    raise SystemExit(f"{prefix}{what} never listened on {path}")


def wait_accepting(sock: Path, proc: subprocess.Popen, log: Path, timeout: float, *, prefix: str, what: str,
                   interval: float = 0.05) -> None:
    """Waits until the socket file exists and a connection to it succeeds. If `proc`
    (`what`) exits first, prints the end of its log and ends the run; also after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            say(log.read_text(errors="replace")[-4000:])
            sys.exit(f"{prefix}{what} exited with {proc.returncode} during startup")
        if is_socket(sock):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                try:
                    s.connect(str(sock))
                    return
                except OSError:
                    pass
        if time.monotonic() > deadline:
            sys.exit(f"{prefix}{what} was not accepting on {sock} after {timeout:.0f} s (see {log})")
        time.sleep(interval)


def stop(proc: subprocess.Popen) -> int:
    """SIGTERM, up to a minute to exit, then SIGKILL; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def unmount_under(root: Path) -> None:
    """Lazily unmounts everything mounted below `root`, deepest first."""
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p.startswith(str(root) + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], check=False)


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process and all its threads, in seconds: user space and kernel."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of all the process's threads (a thread that
    sleeps in epoll_wait and is woken costs one)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches:" in line:
                    total += int(line.split()[-1])
        except OSError:
            pass  # a thread that ended meanwhile
    return total


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its threads, in seconds."""
    return sum(cpu_split(pid))


def callgrind_ready_driver(bins: Path, work: Path) -> tuple[Path, Path]:
    """A copy of the release driver valgrind can read, and the preload shim it needs: valgrind
    3.19 (Debian 12) gives up on the DWARF 5 the Swift toolchain writes (the copy keeps only
    the symbol table, enough for function-level counts), and faults on libdispatch's
    sigsuspend with a read-only mask (valgrind/sigsuspend_shim.c passes a copy).
    Returns (driver, shim); run the driver as `env LD_PRELOAD=<shim> valgrind ... <driver>`."""
    driver = work / "secrets-store-csi-driver"
    subprocess.run(["objcopy", "--strip-debug", str(bins / "secrets-store-csi-driver"), str(driver)], check=True)
    shim = work / "sigsuspend_shim.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(shim),
                    str(Path(__file__).resolve().parent / "valgrind" / "sigsuspend_shim.c"), "-ldl"], check=True)
    return driver, shim
