#!/usr/bin/env bash
# Builds the fuzz targets with libFuzzer's coverage instrumentation (the flags
# `cargo fuzz build --sanitizer none` passes) and runs each for a bounded time
# on a copy of its seed corpus. Stable Rust: RUSTC_BOOTSTRAP=1 unlocks the
# nightly-only flags; with nightly and cargo-fuzz installed,
# `cargo fuzz run nats_record` works the same.
#   FUZZ_SECONDS   seconds per target (default 20)
#   FUZZ_TARGETS   targets to run (default all)
set -euo pipefail
cd "$(dirname "$0")"
secs=${FUZZ_SECONDS:-20}
targets=${FUZZ_TARGETS:-"nats_record nats_config address mdns_packet"}
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# --target keeps the flags off build scripts and proc macros (as cargo-fuzz does).
triple=$(rustc -vV | sed -n "s/^host: //p")
cargo build --release --locked --bins --target-dir target --target "$triple"
for t in $targets; do
  work=target/corpus/$t
  mkdir -p "$work" artifacts/$t
  cp -n seeds/$t/* "$work"/ 2>/dev/null || true
  echo "fuzz: $t for ${secs}s"
  ./target/$triple/release/$t -max_total_time="$secs" -rss_limit_mb=1024 -max_len=70000 \
    -artifact_prefix=artifacts/$t/ "$work" seeds/$t 2>&1 | tail -n 3
done
