#!/usr/bin/env bash
# A legacy shell pipeline: a producer, a filter and a counter, forever.
while true; do
  seq 1 5 | sed 's/^/record /' | while read -r line; do echo "pipeline: $line"; done
  sleep 2
done
