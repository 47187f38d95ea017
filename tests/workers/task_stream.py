"""A stream task worker: takes tasks from worker_sdk.tasks() and answers them.

"fail" fails, "hang" is never answered, "files" gets "NAME=CONTENT ..." of the task's
files (task.files), anything else gets "upper: TEXT". With a
directory argument, answers wait until DIR/go exists; DIR/held holds how many
tasks wait unanswered (written at each new one).
"""

import os
import sys
import threading
import time

import worker_sdk

hold = sys.argv[1] if len(sys.argv) > 1 else None
lock = threading.Lock()
held = []


def answer(task):
    task.reply("upper: " + task.text.upper())


def release():
    while not os.path.exists(os.path.join(hold, "go")):
        time.sleep(0.02)
    global hold_on
    with lock:
        hold_on = False
        for task in held:
            answer(task)
        held.clear()


hold_on = hold is not None
if hold is not None:
    threading.Thread(target=release, daemon=True).start()

for task in worker_sdk.tasks():
    if task.text == "fail":
        task.fail("asked to fail")
    elif task.text == "hang":
        continue
    elif task.text == "files":
        parts = []
        for path in task.files:
            with open(path) as f:
                parts.append(os.path.basename(path) + "=" + f.read())
        task.reply(" ".join(parts))
    else:
        with lock:
            if hold_on:
                held.append(task)
                with open(os.path.join(hold, "held.tmp"), "w") as f:
                    f.write(str(len(held)))
                os.rename(os.path.join(hold, "held.tmp"), os.path.join(hold, "held"))
                continue
        answer(task)
