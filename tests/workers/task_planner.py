"""A oneshot planner: splits its task (stdin) into words, gives each to the program
named by argv[1] with worker_sdk.submit, waits for them and reports the answers."""

import sys

import worker_sdk

text = sys.stdin.read()
handles = [worker_sdk.submit(sys.argv[1], word) for word in text.split()]
answers = [handle.wait(timeout=30) for handle in handles]
if not all(a.ok for a in answers):
    sys.exit("a step failed: " + "; ".join(a.reason for a in answers if not a.ok))
worker_sdk.result(text=" | ".join(a.result for a in answers))
