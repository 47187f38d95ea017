"""Print each argument as a line, then stay."""

import sys
import time

print("\n".join(sys.argv[1:]), flush=True)
while True:
    time.sleep(60)
