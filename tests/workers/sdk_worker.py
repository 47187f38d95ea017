"""A worker that uses worker_sdk as argv[1] says, then prints what it got and waits.

report: progress, a warning and a result, then "reported"; with "ask" after it, then
asks "Keep going?" (yes, no) and prints "answer <answer>".
ask QUESTION CHOICES|- TIMEOUT|- DEFAULT|-: ask (choices comma-separated, "-" for
none), then print "answer <answer>" or "no answer <error>".
ask-exit: ask, then exit at once once "asked" is printed (the question stays open).
raw: write the file argv[2] to DSUP_FD as it is, then a valid result.
Each mode then prints "done" and sleeps until killed, unless argv ends in "exit".
"""

import os
import sys
import threading
import time

from worker_sdk import NoAnswer, ask, log, progress, result

mode = sys.argv[1]
if mode == "report":
    for i in range(11):
        progress(i, total=10, text=f"step {i}")
    log("careful now", level="warning")
    with open("out.csv", "w") as out:
        out.write("a,b\n1,2\n")
    result({"rows": 3}, text="did 3 rows", files=["out.csv"])
    print("reported", flush=True)
    if sys.argv[2:3] == ["ask"]:
        print(f"answer {ask('Keep going?', ['yes', 'no'])}", flush=True)
elif mode in ("ask", "ask-exit"):
    question, choices, timeout, default = sys.argv[2:6]
    picks = None if choices == "-" else choices.split(",")
    if mode == "ask-exit":
        threading.Timer(0.5, lambda: os._exit(3)).start()
        print("asked", flush=True)
    try:
        answer = ask(
            question,
            picks,
            timeout=None if timeout == "-" else float(timeout),
            default=None if default == "-" else default,
        )
        print(f"answer {answer}", flush=True)
    except NoAnswer as exc:
        print(f"no answer {exc}", flush=True)
elif mode == "raw":
    with (
        open(sys.argv[2], "rb") as garbage,
        os.fdopen(int(os.environ["DSUP_FD"]), "wb", closefd=False) as fd,
    ):
        fd.write(garbage.read())
    result(text="after the garbage")
    print("wrote", flush=True)
print("done", flush=True)
if sys.argv[-1] == "exit":
    sys.exit(0)
while True:
    time.sleep(60)
