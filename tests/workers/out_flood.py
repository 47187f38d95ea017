"""Flood stdout with numbered lines until stdin closes: ``out_flood.py``.

Line i is ``line <i> `` padded with dots to 50 bytes plus a newline, written in
64 KiB blocks. At stdin's EOF it writes ``wrote <bytes> <lines>`` to stderr.
"""

import os
import select

block_lines = 1285  # 1285 * 51 bytes: about 64 KiB
total = lines = 0
while not select.select([0], [], [], 0)[0]:
    data = b"".join(
        (b"line %d " % i).ljust(50, b".") + b"\n" for i in range(lines, lines + block_lines)
    )
    lines += block_lines
    total += len(data)
    while data:
        data = data[os.write(1, data) :]
os.write(2, b"wrote %d %d" % (total, lines))
