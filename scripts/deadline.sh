#!/usr/bin/env bash
# Runs a command with a deadline: `bash scripts/deadline.sh SECONDS COMMAND...`. Past the deadline
# it prints the stack of every thread of every process the command started (with gdb, when it is
# installed), stops them all, and exits 124, so that a hang fails in minutes and says where it was
# stuck instead of using up the rest of a CI run.
set -euo pipefail
limit_s=$1
shift

# The command leads its own session, so that everything it starts can be found and stopped.
setsid -w "$@" &
leader=$!
trap 'kill -- -"$leader" 2>/dev/null || true' EXIT
waited_s=0
while kill -0 "$leader" 2>/dev/null; do
  if [ "$waited_s" -ge "$limit_s" ]; then
    echo "deadline: still running after ${limit_s}s: $*" >&2
    for pid in $(pgrep -s "$leader" || true); do
      comm=$(cat "/proc/$pid/comm" 2>/dev/null || true)
      case "$comm" in bash | sh | cargo | timeout | "") continue ;; esac
      echo "deadline: the threads of $comm (pid $pid):" >&2
      if command -v gdb >/dev/null; then
        timeout 60 gdb -p "$pid" -batch -ex 'thread apply all bt 16' 2>/dev/null |
          grep -E '^(Thread|#)' >&2 || true
      else
        for task in /proc/"$pid"/task/*; do
          echo "  thread ${task##*/} $(cat "$task/comm" 2>/dev/null) waiting in $(cat "$task/wchan" 2>/dev/null)" >&2
        done
      fi
    done
    exit 124
  fi
  sleep 2
  waited_s=$((waited_s + 2))
done
trap - EXIT
wait "$leader"
