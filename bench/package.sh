#!/usr/bin/env bash
# Benchmark: the package writer alone (escaping, base64 of export-package
# attachments, part files with fsync) on a 284 MB batch and a 210 MB export
# package; best of 3 each, and the part's SHA-256 to compare outputs.
#
#   bench/package.sh [DIR]    # inputs are generated once into DIR
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --example pack_bench
dir=${1:-$(mktemp -d)}
target/release/examples/pack_bench "$dir"
