#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) starting from
# the committed seeds. Usage: fuzz/run.sh [SECONDS_PER_TARGET]
# The toolchain here is stable; cargo-fuzz needs nightly flags
# (-Zsanitizer=address), which RUSTC_BOOTSTRAP=1 allows on stable.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
export RUSTC_BOOTSTRAP=1
cargo fuzz build
failed=0
for target in $(cargo fuzz list); do
  mkdir -p "corpus/$target"
  echo "== fuzz $target for ${secs}s"
  if ! cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 2>&1 | tail -n 12; then
    echo "fuzz target $target FAILED (see fuzz/artifacts/$target)"
    failed=1
  fi
done
exit "$failed"
