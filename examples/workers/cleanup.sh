#!/usr/bin/env bash
# The same worker as cleanup.py in bash: JSON lines on the fd dsup gives in DSUP_FD
# (docs/worker_protocol.md). Without dsup it just goes ahead with the default answer.
set -u
say() { if [[ -n "${DSUP_FD:-}" ]]; then echo "$1" >&"$DSUP_FD"; else echo "$1" >&2; fi; }

pages=20
stale=0
for page in $(seq 1 "$pages"); do
    sleep 0.5  # the work
    stale=$((stale + 150))
    say "{\"type\":\"progress\",\"done\":$page,\"total\":$pages,\"text\":\"page $page of $pages\"}"
done
listing="${TMPDIR:-/tmp}/dsup-demo-stale-sh.csv"
seq -f "row-%g" 1 "$stale" > "$listing"
say "{\"type\":\"result\",\"data\":{\"stale_rows\":$stale},\"text\":\"found $stale stale rows\",\"files\":[\"$listing\"]}"

answer=no
if [[ -n "${DSUP_FD:-}" ]]; then
    say "{\"type\":\"ask\",\"id\":\"q1\",\"question\":\"Delete $stale stale rows?\",\"choices\":[\"yes\",\"no\"],\"timeout\":120,\"default\":\"no\"}"
    while read -r -u "$DSUP_FD" line; do
        [[ "$line" == *'"id":"q1"'* ]] || continue  # an answer to another question
        [[ "$line" == *'"answer":"yes"'* ]] && answer=yes
        break
    done
fi
if [[ "$answer" == yes ]]; then
    say "{\"type\":\"log\",\"level\":\"warning\",\"text\":\"deleting $stale rows\"}"
    say "{\"type\":\"result\",\"data\":{\"deleted\":$stale},\"text\":\"deleted $stale rows\"}"
fi
echo "done: $answer"
sleep 30
