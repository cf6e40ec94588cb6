#!/usr/bin/env bash
# bench.sh — `make bench`: tenantkit's benchmarks (bench/), and one table of figures, baselines
# measured in the same run, ratios and targets (bench/report).
#
#   BENCH=all      (default) everything, about 5 minutes on a 2-core machine
#   BENCH=rls      only the RLS benchmark (three datasets of 1,000,000 projects)
#   BENCH=service  only checkPermission, usage ingestion, webhooks and memory
#   BENCH=pooler   only the latency through PgBouncer and of each query mode (needs pgbouncer)
#   BENCH=retention  only the bounded tables: 18 simulated months of traffic and the maintenance job
#
# RLS_BENCHTIME (default 1s) is -benchtime of each RLS sub-benchmark, each run three times
# (interleaved); TENANTKIT_BENCH_SIZES (e.g. 10000) limits the RLS datasets. PostgreSQL is found
# as for `make test`. The raw output is kept in a temporary directory (its path is printed).
# Exit status: non-zero when a benchmark fails (an error, a wrong answer, a wrong total); a target
# that is not met is reported in the table, not as an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

which=${BENCH:-all}
out_dir=$(mktemp -d "${TMPDIR:-/tmp}/tenantkit-bench.XXXXXX")
raw=$out_dir/bench.txt
start=$(date +%s)
echo "bench: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo) RAM, $(go version | cut -d' ' -f3)," \
	"load average at start:$(uptime | sed 's/.*load average://')"
echo "bench: raw output in $raw"

# -v so that the benchmarks' logs (load times, plans, each phase's figures) land in the raw output;
# the console shows the result lines and the phase summaries.
run() {
	go test ./bench -run '^$' -timeout 30m -v "$@" 2>&1 | tee -a "$raw" |
		grep -E '^Benchmark\S+\s+[0-9]+\s|^(ok|FAIL|---|panic)|(dataset:|checkPermission |recordUsage:|upsert:|webhooks |pooler round|retention: month)' || true
	if grep -qE '^(FAIL|--- FAIL|panic:)' "$raw"; then
		echo "bench: a benchmark failed; see $raw" >&2
		exit 1
	fi
}
case $which in
all | rls) run -bench 'BenchmarkListProjects' -benchtime "${RLS_BENCHTIME:-1s}" ;;
esac
case $which in
all | service) run -bench 'BenchmarkCheckPermission|BenchmarkUsageIngestion|BenchmarkWebhooks' -benchtime 1x ;;
esac
case $which in
all | pooler) run -bench 'BenchmarkPooler' -benchtime 1x ;;
esac
case $which in
all | retention) run -bench 'BenchmarkRetention' -benchtime 1x ;;
esac
case $which in
all | rls | service | pooler | retention) ;;
*)
	echo "bench: BENCH must be all, rls, service, pooler or retention" >&2
	exit 2
	;;
esac

echo
go run ./bench/report <"$raw"
wall=$(($(date +%s) - start))
echo "bench: load average at end:$(uptime | sed 's/.*load average://'); total wall time $((wall / 60))m$((wall % 60))s"
