"""Print numbered 70-byte lines as fast as the pipe takes them, forever: ``ctl_flood.py [MB/S]``.

With a rate (megabytes a second), the flood keeps to it on average, so a test
can bound how much it writes to disk whatever the speed of the machine.
"""

import os
import sys
import time

rate = float(sys.argv[1]) * 1e6 if len(sys.argv) > 1 else 0.0
began = time.monotonic()
written = n = 0
while True:
    block = b"".join((b"flood %d " % i).ljust(69, b".") + b"\n" for i in range(n, n + 1000))
    n += 1000
    written += len(block)
    while block:
        block = block[os.write(1, block) :]
    if rate:
        ahead = began + written / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
