"""A worker that uses worker_sdk: progress while it scans, a result, then a question.

It finds "stale rows", reports them, and asks before deleting them (answer with
`dsup ctl asks` and `dsup ctl answer ID yes`); nobody answering within two minutes
means no. Run on its own, it prints to stderr and asks on the terminal.
"""

import pathlib
import sys
import tempfile
import time

# The SDK is standard library only: the repository's copy is enough, installed or not.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from worker_sdk import ask, log, progress, result

PAGES = 20

stale = 0
for page in range(1, PAGES + 1):
    time.sleep(0.5)  # the work
    stale += 150
    progress(page, total=PAGES, text=f"page {page} of {PAGES}")
    if page == PAGES // 2:
        log("halfway; the remote is slow today", level="warning")

listing = pathlib.Path(tempfile.gettempdir(), "dsup-demo-stale.csv")
listing.write_text("".join(f"row-{i}\n" for i in range(stale)))
result({"stale_rows": stale}, text=f"found {stale:,} stale rows", files=[str(listing)])

answer = ask(f"Delete {stale:,} stale rows?", ["yes", "no"], timeout=120, default="no")
if answer == "yes":
    log(f"deleting {stale:,} rows", level="warning")
    result({"deleted": stale}, text=f"deleted {stale:,} rows")
else:
    log("keeping the rows")
print(f"done: {answer}", flush=True)
time.sleep(30)  # then dsup starts the next round (restart = "always")
