"""Print numbered lines as fast as the pipe takes them for argv[1] seconds, then stay."""

import sys
import time

out = sys.stdout
end = time.monotonic() + float(sys.argv[1])
n = 0
while time.monotonic() < end:
    out.write("".join(f"flood line {n + i} {'x' * 40}\n" for i in range(100)))
    n += 100
out.flush()
while True:
    time.sleep(60)
