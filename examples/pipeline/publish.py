"""The risky step: publishing needs a human's yes (dsup ctl answer, or Discord)."""

import worker_sdk

for task in worker_sdk.tasks():
    first = task.text.splitlines()[0] if task.text else ""
    choice = worker_sdk.ask(
        f"Publish this text ({len(task.text)} characters, starting {first[:60]!r})?",
        ["yes", "no"],
        timeout=600,
        default="no",
    )
    if choice == "yes":
        task.reply(f"published:\n{task.text}")
    else:
        task.fail("a human said no (or nobody answered in 10 minutes)")
