"""A burst, then silence: ``console_burst.py COUNT``.

Writes COUNT short numbered lines and ``FINAL LINE`` in one write, then waits
until stdin is closed (the test's signal to end), so the pipe stays open but idle.
"""

import os
import sys

count = int(sys.argv[1])
data = b"".join(b"burst %d\n" % i for i in range(count)) + b"FINAL LINE\n"
while data:
    data = data[os.write(1, data) :]
sys.stdin.buffer.read()
