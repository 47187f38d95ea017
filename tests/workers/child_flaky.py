"""Exit 1 at once unless the file argv[1] exists; otherwise print "ready" and sleep."""

import os
import sys
import time

if not os.path.exists(sys.argv[1]):
    sys.exit(1)
print("ready", flush=True)
while True:
    time.sleep(60)
