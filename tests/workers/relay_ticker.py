"""Print "run R line N" argv[2] times a second; R counts runs in the file argv[1]."""

import sys
import time
from pathlib import Path

counter = Path(sys.argv[1])
run = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(run))
period = 1.0 / float(sys.argv[2])
start = time.monotonic()
n = 0
while True:
    print(f"run {run} line {n}", flush=True)
    n += 1
    time.sleep(max(0.0, start + n * period - time.monotonic()))
