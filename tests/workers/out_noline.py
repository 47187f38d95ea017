"""Write bytes with no newline at all: ``out_noline.py MIB [utf8]``.

With ``utf8`` the stream is the 3-byte character U+20AC repeated, so that cuts
at arbitrary byte offsets would split characters; otherwise ASCII ``y``.
"""

import os
import sys

mib = int(sys.argv[1])
unit = "\u20ac".encode() * 1024 if len(sys.argv) > 2 and sys.argv[2] == "utf8" else b"y" * 3072
block = unit * 342  # about 1 MiB, a multiple of the unit
left = (mib << 20) // 3 * 3  # whole characters
while left > 0:
    view = memoryview(block)[:left]
    left -= len(view)
    while view:
        view = view[os.write(1, view) :]
