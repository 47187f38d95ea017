"""The writer: a paragraph per topic (a stand-in for a call to a language model)."""

import os

import worker_sdk

for task in worker_sdk.tasks():
    topic = task.text.strip()
    worker_sdk.log(f"writing about {topic}")
    task.reply(f"{topic}: a short paragraph about {topic}, by {os.environ['DSUP_PROCESS']}.")
