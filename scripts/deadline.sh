#!/usr/bin/env bash
# Runs a command with a deadline: `bash scripts/deadline.sh SECONDS COMMAND...`. Past the deadline
# it prints the stack of every thread of every process the command started (with gdb, when it is
# installed), stops them all, and exits 124, so that a hang fails in minutes and says where it was
# stuck instead of using up the rest of a CI run. A CI log may keep only its end, so the end is a
# summary: each thread's innermost frames in Wellspring, llama.cpp or ggml, then the last lines the
# command printed (for `cargo test`, the test that was running).
set -euo pipefail
limit_s=$1
shift

output=$(mktemp)
stacks=$(mktemp)
# The command leads its own session, so that everything it starts can be found and stopped. Its
# output goes through `tee` to keep a copy for the summary.
setsid -w bash -c 'set -o pipefail; "${@:2}" 2>&1 | tee "$1"' bash "$output" "$@" &
leader=$!
trap 'kill -- -"$leader" 2>/dev/null || true; rm -f "$output" "$stacks"' EXIT
waited_s=0
while kill -0 "$leader" 2>/dev/null; do
  if [ "$waited_s" -ge "$limit_s" ]; then
    echo "deadline: still running after ${limit_s}s: $*" >&2
    for pid in $(pgrep -s "$leader" || true); do
      comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
      case "$comm" in bash | sh | cargo | timeout | tee | "") continue ;; esac
      echo "deadline: the threads of $comm (pid $pid):" | tee -a "$stacks" >&2
      if command -v gdb >/dev/null; then
        timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 24' 2>/dev/null |
          grep -E '^(Thread|#)' | tee -a "$stacks" >&2 || true
      else
        for task in /proc/"$pid"/task/*; do
          echo "  thread ${task##*/} $(cat "$task/comm" 2>/dev/null) waiting in $(cat "$task/wchan" 2>/dev/null)" >&2
        done
      fi
    done
    echo "deadline: summary, each thread's innermost frames in wellspring, llama or ggml:" >&2
    awk '/^deadline:/ { print; next }
      /^Thread/ { name = $0; sub(/^[^"]*/, "", name); sub(/\):$/, "", name); shown = 0; print "  thread " name; next }
      /^#/ && shown < 3 && /(wellspring|llama|ggml)/ {
        frame = $0; where = ""
        if (match(frame, / at [^ ]+:[0-9]+$/)) where = substr(frame, RSTART)
        sub(/^#[0-9]+ +(0x[0-9a-f]+ in )?/, "", frame); sub(/ \(.*$/, "", frame)
        print "    " frame where; shown++ }' "$stacks" >&2
    echo "deadline: the last lines it printed:" >&2
    tail -n 8 "$output" >&2
    exit 124
  fi
  sleep 2
  waited_s=$((waited_s + 2))
done
trap - EXIT
rm -f "$stacks"
status=0
wait "$leader" || status=$?
rm -f "$output"
exit "$status"
