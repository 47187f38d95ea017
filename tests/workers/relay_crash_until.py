"""Crash (exit 1, "Traceback: crash N" on stderr) on every run while the gate argv[1]
(``tests._wait.Gate``) is shut; once it is open, print "up" and stay.

Runs are counted in the file argv[2] (this run's number is N).
"""

import fcntl
import signal
import sys
from pathlib import Path

gate, counter = Path(sys.argv[1]), Path(sys.argv[2])
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
with gate.open("rb") as shut:
    try:
        fcntl.flock(shut, fcntl.LOCK_SH | fcntl.LOCK_NB)  # never waits: shut means crash
    except BlockingIOError:
        print(f"Traceback: crash {runs}", file=sys.stderr, flush=True)
        sys.exit(1)
print("up", flush=True)
while True:
    signal.pause()  # up until dsup stops it
