"""Print numbered lines fast: ``out_lines.py COUNT [stdout|stderr] [TAIL]``.

Line i is ``line <i> `` padded with dots to 50 bytes plus a newline; an optional
TAIL is written last without a newline. Writes in large blocks.
"""

import os
import sys

count = int(sys.argv[1])
fd = 2 if len(sys.argv) > 2 and sys.argv[2] == "stderr" else 1
tail = sys.argv[3].encode() if len(sys.argv) > 3 else b""
block = []
size = 0
for i in range(count):
    line = (b"line %d " % i).ljust(50, b".") + b"\n"
    block.append(line)
    size += len(line)
    if size >= 1 << 16:
        data = b"".join(block)
        while data:
            data = data[os.write(fd, data) :]
        block, size = [], 0
data = b"".join(block) + tail
while data:
    data = data[os.write(fd, data) :]
