"""Print to stdout WITHOUT flushing, announce on stderr, then sleep until killed.

Run without -u: whether the stdout line arrives early depends on PYTHONUNBUFFERED.
"""

import sys
import time

print("buffered line")
sys.stderr.write("printed\n")
sys.stderr.flush()
while True:
    time.sleep(60)
