"""Print numbered 70-byte lines as fast as the pipe takes them: ``ctl_flood.py [MB/S [MB]]``.

With a rate (megabytes a second), the flood keeps to it on average. With a size
too, it prints "ready", waits for SIGUSR1, floods that many megabytes, then goes
on at a trickle (100 lines a second): what a test writes to disk is then bounded
whatever the speed of the machine and however long the test takes.
"""

import os
import signal
import sys
import time

rate = float(sys.argv[1]) * 1e6 if len(sys.argv) > 1 else 0.0
budget = float(sys.argv[2]) * 1e6 if len(sys.argv) > 2 else float("inf")
if len(sys.argv) > 2:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})  # an early signal waits
    os.write(1, b"ready\n")
    signal.sigwait({signal.SIGUSR1})
began = time.monotonic()
written = n = 0
while True:
    burst = written < budget
    count = 1000 if burst else 1
    block = b"".join((b"flood %d " % i).ljust(69, b".") + b"\n" for i in range(n, n + count))
    n += count
    written += len(block)
    while block:
        block = block[os.write(1, block) :]
    if not burst:
        time.sleep(0.01)
    elif rate:
        ahead = began + written / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
