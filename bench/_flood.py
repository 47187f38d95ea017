"""Benchmark writer: waits for a go on a FIFO, then floods stdout as fast as it can.

Modes: ``lines`` writes ``--count`` lines of ``--size`` bytes (newline included)
in blocks of about 100 KB; ``noline`` writes ``--count`` bytes with no newline at
all. Standalone (stdlib only) so that every supervisor runs the same child.
"""

from __future__ import annotations

import argparse
import os
import sys


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main() -> int:
    """Parse the arguments, wait for the go, write."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--gate", required=True, help="a FIFO to read one byte from first")
    parser.add_argument("--mode", choices=("lines", "noline"), default="lines")
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=100)
    args = parser.parse_args()
    with open(args.gate, "rb") as gate:
        gate.read(1)
    fd = sys.stdout.fileno()
    if args.mode == "lines":
        line = b"x" * (args.size - 1) + b"\n"
        per_block = max(1, 100_000 // args.size)
        block = line * per_block
        full, rest = divmod(args.count, per_block)
        for _ in range(full):
            _write_all(fd, block)
        _write_all(fd, line * rest)
    else:
        block = b"y" * (1 << 20)
        full, rest = divmod(args.count, len(block))
        for _ in range(full):
            _write_all(fd, block)
        _write_all(fd, block[:rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
