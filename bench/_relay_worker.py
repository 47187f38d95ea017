"""Bench worker: wait for the gate file argv[1], write argv[2] lines of about 50 bytes at
once, then argv[3] lines a second (in tenths of a second) until stopped."""

import os
import sys
import time

gate, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
while not os.path.exists(gate):
    time.sleep(0.01)
out = sys.stdout
for start in range(0, count, 1000):
    out.write("".join(f"line {n:09d} {'x' * 34}\n" for n in range(start, min(count, start + 1000))))
out.flush()
n, batch = count, rate // 10
while True:
    if batch:
        out.write("".join(f"line {i:09d} {'x' * 34}\n" for i in range(n, n + batch)))
        out.flush()
        n += batch
    time.sleep(0.1 if batch else 60)
