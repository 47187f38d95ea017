"""A worker that takes its time to stop: on SIGTERM it exits 0 after a delay.

Usage: fleet_slow_term.py DELAY_SECONDS

Prints "ready", then sleeps; SIGTERM makes it print "stopping", wait
DELAY_SECONDS and exit 0 (a clean stop slower than a short stop timeout).
"""

import signal
import sys
import time

delay = float(sys.argv[1])


def on_term(signum, frame):
    print("stopping", flush=True)
    time.sleep(delay)
    sys.exit(0)


signal.signal(signal.SIGTERM, on_term)
print("ready", flush=True)
while True:
    time.sleep(60)
