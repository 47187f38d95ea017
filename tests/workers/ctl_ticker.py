"""A worker for the control tests: prints "tick N" lines until stopped.

Usage: ctl_ticker.py [INTERVAL_SECONDS] [--stderr] [--ignore-term]

Prints "ready" first; on SIGUSR1 prints "got SIGUSR1"; exits 0 on SIGTERM
(or ignores it with --ignore-term). With --stderr every tick also goes to
stderr as "err tick N".
"""

import signal
import sys
import time

interval = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1][0].isdigit() else 0.2
to_stderr = "--stderr" in sys.argv


def on_usr1(signum, frame):
    print("got SIGUSR1", flush=True)


def on_term(signum, frame):
    sys.exit(0)


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, signal.SIG_IGN if "--ignore-term" in sys.argv else on_term)
print("ready", flush=True)
n = 0
while True:
    n += 1
    print(f"tick {n}", flush=True)
    if to_stderr:
        print(f"err tick {n}", file=sys.stderr, flush=True)
    time.sleep(interval)
