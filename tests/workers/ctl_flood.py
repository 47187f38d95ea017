"""Print numbered 70-byte lines as fast as the pipe takes them, forever: ``ctl_flood.py``."""

import os

n = 0
while True:
    block = b"".join((b"flood %d " % i).ljust(69, b".") + b"\n" for i in range(n, n + 1000))
    n += 1000
    while block:
        block = block[os.write(1, block) :]
