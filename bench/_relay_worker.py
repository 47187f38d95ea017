"""Bench worker: argv[4] times, write argv[2] lines of about 50 bytes at once when the gate
file argv[1] has grown by a byte (waiting for it in between), then, once it grows by one
more, argv[3] lines a second (in tenths of a second) until stopped."""

import os
import sys
import time

gate, count, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
bursts = int(sys.argv[4]) if len(sys.argv) > 4 else 1
out = sys.stdout
n = 0


def wait(opened: int) -> None:
    while not os.path.exists(gate) or os.path.getsize(gate) <= opened:
        time.sleep(0.01)


for burst in range(bursts):
    wait(burst)
    for start in range(n, n + count, 1000):
        end = min(n + count, start + 1000)
        out.write("".join(f"line {i:09d} {'x' * 34}\n" for i in range(start, end)))
    out.flush()
    n += count
wait(bursts)
batch = rate // 10
while True:
    if batch:
        out.write("".join(f"line {i:09d} {'x' * 34}\n" for i in range(n, n + batch)))
        out.flush()
        n += batch
    time.sleep(0.1 if batch else 60)
