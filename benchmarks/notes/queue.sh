#!/bin/sh
# Runs the lines of benchmarks/notes/queue.txt one at a time (one training process at a
# time on the shared CPU), moving each line to queue.done when it has run.
cd "$(dirname "$0")/../.." || exit 1
while :; do
    line=$(head -n 1 benchmarks/notes/queue.txt 2>/dev/null)
    if [ -z "$line" ]; then sleep 5; [ -f benchmarks/notes/queue.stop ] && exit 0; continue; fi
    sed -i 1d benchmarks/notes/queue.txt
    echo "$(date -u +%FT%TZ) START $line" >> benchmarks/notes/queue.done
    sh -c "$line" >> /tmp/science_queue.log 2>&1
    echo "$(date -u +%FT%TZ) END rc=$? $line" >> benchmarks/notes/queue.done
done
