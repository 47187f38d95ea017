"""A oneshot task worker for the task tests: argv[1] says what it does.

echo        print {"argv", "stdin", "in_task_dir", "task_id", "files"} as JSON (files:
            the sha256 of each file in its directory, by name), exit 0
fail        write five lines to stderr, exit 3
sdk         print noise, report worker_sdk.result(text="summary: " + stdin), exit 0
hold DIR    fork a grandchild, write "pid grandchild_pid" to DIR/TASK_ID.pids, then
            wait until DIR/go exists and exit 0 (a stop or timeout kills it first);
            with "echo" after DIR, print stdin after "held TASK_ID"
"""

import hashlib
import json
import os
import pathlib
import sys
import time

mode = sys.argv[1]
task_id = os.environ["DSUP_TASK_ID"]
if mode == "echo":
    print(
        json.dumps(
            {
                "argv": sys.argv[2:],
                "stdin": sys.stdin.read(),
                "in_task_dir": os.getcwd() == os.environ["DSUP_TASK_DIR"],
                "task_id": task_id,
                "files": {
                    name: hashlib.sha256(pathlib.Path(name).read_bytes()).hexdigest()
                    for name in sorted(os.listdir("."))
                },
            }
        )
    )
elif mode == "sdk":
    import worker_sdk

    print("noise that is not the answer")
    worker_sdk.result(text="summary: " + sys.stdin.read(), data={"words": 2})
elif mode == "fail":
    for i in range(5):
        print(f"problem {i}", file=sys.stderr)
    sys.exit(3)
elif mode == "hold":
    where = sys.argv[2]
    child = os.fork()
    if child == 0:
        while True:
            time.sleep(60)
    with open(os.path.join(where, f"{task_id}.tmp"), "w") as f:
        f.write(f"{os.getpid()} {child}")
    os.rename(os.path.join(where, f"{task_id}.tmp"), os.path.join(where, f"{task_id}.pids"))
    while not os.path.exists(os.path.join(where, "go")):
        time.sleep(0.02)
    os.kill(child, 9)
    os.waitpid(child, 0)
    print(f"held {task_id}")
    if sys.argv[3:] == ["echo"]:
        print(sys.stdin.read())
