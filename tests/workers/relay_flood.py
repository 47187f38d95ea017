"""Print numbered lines as fast as the pipe takes them, then stay."""

import sys
import time

out = sys.stdout
for n in range(int(sys.argv[1])):
    out.write(f"flood line {n} {'x' * 40}\n")
out.flush()
while True:
    time.sleep(60)
