#!/usr/bin/env bash
# Run every cargo-fuzz target for N seconds each (default 30): ./run.sh [SECONDS] [TARGET...]
# Only stable Rust is installed: RUSTC_BOOTSTRAP=1 lets it accept the -Z sanitizer flags.
set -euo pipefail

secs="${1:-30}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(frontend backend backend_masked startup framer mask policy)
fi

cd "$(dirname "$0")"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1

for target in "${targets[@]}"; do
    echo "== fuzz ${target} for ${secs}s"
    mkdir -p "corpus/${target}"
    cargo fuzz run "${target}" "corpus/${target}" -- -max_total_time="${secs}" -rss_limit_mb=2048 -print_final_stats=1
done
