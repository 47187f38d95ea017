"""Crash together: wait for the gate file argv[1], then exit 1 with a line on stderr.

Only the first run of each process (a marker per ``DSUP_PROCESS`` in the directory
argv[2]) waits; later runs print "up" and stay, so the burst is one crash per process,
or with argv[3] = "fail" exit 1 at once (a crash loop that ends FATAL).
"""

import os
import sys
import time
from pathlib import Path

gate, markers = Path(sys.argv[1]), Path(sys.argv[2])
marker = markers / os.environ["DSUP_PROCESS"].replace(":", "-")
if marker.exists():
    if sys.argv[3:] == ["fail"]:
        sys.exit(1)
    print("up", flush=True)
    while True:
        time.sleep(60)
markers.mkdir(parents=True, exist_ok=True)
marker.touch()
print("waiting for the gate", flush=True)
while not gate.exists():  # a file polled often: every process sees it within 10 ms
    time.sleep(0.01)
print(f"Traceback: {os.environ['DSUP_PROCESS']} crashed with the others", file=sys.stderr)
sys.exit(1)
