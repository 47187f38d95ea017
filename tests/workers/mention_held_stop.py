"""A worker whose stop waits for the test: on SIGTERM it prints "stopping", then reads one
byte from the FIFO argv[1] (the test holds it open and writes a byte per stop it lets
through) and exits 0.

Prints "ready" first, then waits for signals.
"""

import os
import signal
import sys

release = sys.argv[1]


def on_term(signum, frame):
    print("stopping", flush=True)
    fd = os.open(release, os.O_RDONLY)  # the test holds the FIFO open: no wait here
    os.read(fd, 1)  # blocks until the test lets this stop through
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    signal.pause()
