"""Crash (exit 1, a line on stderr) on the first argv[2] runs, counted in the file argv[1];
then print "up" and stay."""

import sys
import time
from pathlib import Path

counter = Path(sys.argv[1])
runs = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(runs))
if runs <= int(sys.argv[2]):
    print(f"Traceback: crash {runs}", file=sys.stderr, flush=True)
    sys.exit(1)
print("up", flush=True)
while True:
    time.sleep(60)
