"""Write the bytes given as hex to stdout: ``out_bytes.py HEX [hold]``.

With ``hold`` the script then keeps its stdout open until its stdin closes.
"""

import os
import sys

data = bytes.fromhex(sys.argv[1])
while data:
    data = data[os.write(1, data) :]
if len(sys.argv) > 2 and sys.argv[2] == "hold":
    sys.stdin.buffer.read()
