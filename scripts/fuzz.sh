#!/usr/bin/env bash
# Runs the fuzz targets in fuzz/ for longer than `cargo test` does, and prints one line per target.
#
#   scripts/fuzz.sh                    # 600 seconds per target, a fresh seed
#   scripts/fuzz.sh 60 transport       # 60 seconds per target, only the tests matching "transport"
#   WELLSPRING_FUZZ_SEED=0x1234 WELLSPRING_FUZZ_BATCH=7 scripts/fuzz.sh 30 dispatch::random_params
#                                      # replay a failure from the seed and batch it printed
#
# Other settings (WELLSPRING_FUZZ_CASES, WELLSPRING_TEST_MODEL) pass through; see fuzz/src/lib.rs.
# The targets run in the debug build `cargo test` makes: it checks integer overflow and debug
# assertions, which turn silent corruption into findings, and its dependencies are optimised
# anyway (see the root Cargo.toml). WELLSPRING_FUZZ_PROFILE=release trades those checks for speed,
# after building llama.cpp once more in release mode.
# The report (one JSON line per target) is left in target/fuzz-report.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-600}
filter=${2:-}
report="$PWD/target/fuzz-report.jsonl"
mkdir -p target
rm -f "$report"

# The tiny-model target needs the tiny model, which scripts/test-models.sh writes.
if [ -z "${WELLSPRING_TEST_MODEL:-}" ] && [ ! -s models/tiny.gguf ]; then
  bash scripts/test-models.sh
fi

profile=${WELLSPRING_FUZZ_PROFILE:-dev}
# The case caps keep `cargo test` cheap; a long run is bounded by time alone.
export WELLSPRING_FUZZ_CASES=${WELLSPRING_FUZZ_CASES:-1000000000}

# One target at a time, so each gets the machine's cores for its whole budget.
WELLSPRING_FUZZ_SECS=$seconds WELLSPRING_FUZZ_REPORT=$report \
  cargo test --profile "$profile" --locked -p wellspring-fuzz --test fuzz -- \
  --test-threads=1 --nocapture $filter

echo
python3 - "$report" <<'PRINT'
import json, sys

print(f"{'target':<24}{'cases':>12}{'seconds':>10}  seed")
for line in open(sys.argv[1]):
    run = json.loads(line)
    print(f"{run['target']:<24}{run['cases']:>12}{run['seconds']:>10}  {run['seed']}")
PRINT
