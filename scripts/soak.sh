#!/usr/bin/env bash
# soak.sh — `make soak`: BenchmarkSoak (bench/soak_test.go), SOAK_DURATION (default 10m) of mixed
# traffic at SOAK_RATE (default 100) operations/s against `tenantkit serve` in its own process.
# Fails on any unexpected answer, a wrong total, growing memory or goroutines after warm-up, or a
# last-minute p99 above 1.5× the first. The raw output is kept in a temporary directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
raw=$(mktemp -d "${TMPDIR:-/tmp}/tenantkit-soak.XXXXXX")/soak.txt
echo "soak: ${SOAK_DURATION:-10m} at ${SOAK_RATE:-100}/s; raw output in $raw"
status=0
go test ./bench -run '^$' -bench '^BenchmarkSoak$' -benchtime 1x -timeout 3h -v >"$raw" 2>&1 || status=$?
grep -E '^(Benchmark|ok|FAIL|---|panic)|soak' "$raw" || true
exit "$status"
