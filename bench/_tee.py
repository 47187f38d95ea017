"""Benchmark floor: the least a Python supervisor can do to keep a log and print every line.

Reads its stdin in reads of up to 1 MiB (from a pipe grown to 1 MiB, as dsup's are) and writes
each read to the log file and to stdout; with ``--prefix``, stdout gets every complete line
prefixed, with one ``bytes.replace`` per read, as dsup's plain console does, and glibc's
malloc tuned as dsup tunes it for floods (``supervisor/output/allocator.py``), so the buffers
of each read cost no page faults. No framing of long lines, no drop accounting, no event
loop: what is left is the copies and the system calls. Standalone (stdlib only).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import os

READ_BYTES = 1024 * 1024
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> int:
    """Copy stdin to the log and to stdout until EOF."""
    parser = argparse.ArgumentParser()
    parser.add_argument("log", help="the log file every byte goes to")
    parser.add_argument("--prefix", default="", help="put this before every line on stdout")
    args = parser.parse_args()
    with contextlib.suppress(OSError):  # keep the default size: only more wake-ups
        fcntl.fcntl(0, fcntl.F_SETPIPE_SZ, READ_BYTES)
    log = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    head = args.prefix.encode()
    if head:
        libc = ctypes.CDLL(None)
        libc.mallopt(M_MMAP_THRESHOLD, 16 * 1024 * 1024)
        libc.mallopt(M_TRIM_THRESHOLD, 32 * 1024 * 1024)
    buf = bytearray(READ_BYTES)
    tail = b""
    while n := os.readv(0, (buf,)):
        view = memoryview(buf)[:n]
        _write_all(log, view)
        if not head:
            _write_all(1, view)
            continue
        last = buf.rfind(b"\n", 0, n)
        if last < 0:
            tail += bytes(view)
            continue
        lines = tail + bytes(view[:last]) if tail else bytes(view[:last])
        tail = bytes(view[last + 1 :])
        _write_all(1, b"".join((head, lines.replace(b"\n", b"\n" + head), b"\n")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
