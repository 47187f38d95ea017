"""The planner: one request in, a written and approved text out.

Each request is a comma-separated list of topics. Every topic goes to `writer`
(in parallel), the joined draft to `shout` (a bash oneshot), and the result to
`publish`, which asks a human. Any failed step fails the request, saying which.
"""

import worker_sdk

for request in worker_sdk.tasks():
    topics = [t.strip() for t in request.text.split(",") if t.strip()]
    if not topics:
        request.fail("give topics, separated by commas")
        continue
    worker_sdk.progress(0.1, f"writing {len(topics)} paragraphs")
    drafts = [worker_sdk.submit("writer", topic) for topic in topics]
    written = [d.wait(timeout=120) for d in drafts]
    failed = [w for w in written if not w.ok]
    if failed:
        request.fail(f"writer: {failed[0].state}: {failed[0].reason}")
        continue
    worker_sdk.progress(0.6, "polishing")
    loud = worker_sdk.submit("shout", "\n".join(w.result for w in written)).wait(timeout=60)
    if not loud.ok:
        request.fail(f"shout: {loud.state}: {loud.reason}")
        continue
    worker_sdk.progress(0.8, "waiting for approval")
    published = worker_sdk.submit("publish", loud.result).wait(timeout=900)
    if published.ok:
        request.reply(published.result)
    else:
        request.fail(f"publish: {published.state}: {published.reason}")
