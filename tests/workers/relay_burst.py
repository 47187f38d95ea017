"""Crash together: wait behind the gate argv[1] (``tests._wait.Gate``), then exit 1 with a
line on stderr.

Only the first run of each process (a marker per ``DSUP_PROCESS`` in the directory
argv[2]) waits; later runs print "up" and stay, so the burst is one crash per process,
or with argv[3] = "fail" exit 1 at once (a crash loop that ends FATAL).
"""

import fcntl
import os
import signal
import sys
from pathlib import Path

gate, markers = Path(sys.argv[1]), Path(sys.argv[2])
marker = markers / os.environ["DSUP_PROCESS"].replace(":", "-")
if marker.exists():
    if sys.argv[3:] == ["fail"]:
        sys.exit(1)
    print("up", flush=True)
    while True:
        signal.pause()  # up until dsup stops it
markers.mkdir(parents=True, exist_ok=True)
marker.touch()
print("waiting for the gate", flush=True)
with gate.open("rb") as shut:  # blocks until the test opens the gate: all go at once
    fcntl.flock(shut, fcntl.LOCK_SH)
print(f"Traceback: {os.environ['DSUP_PROCESS']} crashed with the others", file=sys.stderr)
sys.exit(1)
