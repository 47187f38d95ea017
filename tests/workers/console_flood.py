"""A flooding worker: writes 20 lines every 20 ms (about 1000 a second) until stopped."""

import itertools
import os
import sys
import time

name = os.environ.get("DSUP_PROCESS", "flood")
for n in itertools.count(step=20):
    sys.stdout.write("".join(f"{name} line {n + i}\n" for i in range(20)))
    sys.stdout.flush()
    time.sleep(0.02)  # pacing, not synchronisation
