"""Alternate huge blocking writes to stdout and stderr: ``out_alternate.py ROUNDS MIB``.

Each round writes MIB mebibytes of ``o`` lines to stdout, then as many of ``e``
lines to stderr. A reader that drains only one pipe at a time deadlocks here.
"""

import os
import sys

rounds = int(sys.argv[1])
size = int(sys.argv[2]) << 20
out = (b"o" * 1023 + b"\n") * (size // 1024)
err = (b"e" * 1023 + b"\n") * (size // 1024)
for _ in range(rounds):
    for fd, data in ((1, out), (2, err)):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
