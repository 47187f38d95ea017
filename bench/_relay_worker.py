"""Bench worker: wait for the gate file argv[1], write argv[2] lines of about 50 bytes, stay."""

import os
import sys
import time

gate, count = sys.argv[1], int(sys.argv[2])
while not os.path.exists(gate):
    time.sleep(0.01)
out = sys.stdout
for start in range(0, count, 1000):
    out.write("".join(f"line {n:09d} {'x' * 34}\n" for n in range(start, min(count, start + 1000))))
out.flush()
while True:
    time.sleep(60)
