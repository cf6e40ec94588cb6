#!/usr/bin/env bash
# bench-rls.sh — what row-level security costs "list my projects in tenant T".
#
# Runs BenchmarkListProjects (bench/bench_test.go: 10,000 tenants, 1,000,000 projects, loaded once
# into a throwaway database) five times per sub-benchmark, keeps the raw output in a temporary
# directory, and prints the median ns/op of each sub-benchmark and the ratios
#   rls / bypass                         whole user transaction (begin, set_config, query, commit)
#   rls-query-only / bypass-query-only   the query alone, role and claims set once
# against the target: RLS costs at most 20% more than the same query with BYPASSRLS.
#
# Needs PostgreSQL as for `go test` (TEST_DATABASE_URL, DATABASE_URL, or a server on
# 127.0.0.1:5432). BENCHTIME and COUNT override -benchtime (3s) and -count (5).
# Exit status: go test's; an unmet target is reported, not an error.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

benchtime=${BENCHTIME:-3s}
count=${COUNT:-5}
out_dir=$(mktemp -d "${TMPDIR:-/tmp}/tenantkit-bench-rls.XXXXXX")
out=$out_dir/bench.txt

echo "bench-rls: $(nproc) CPUs, load average at start:$(uptime | sed 's/.*load average://')"
echo "bench-rls: raw output in $out"
start=$(date +%s)
# -v so that the benchmark's b.Logf output (load time, EXPLAIN plans) is printed.
go test ./bench -run '^$' -bench 'BenchmarkListProjects' -benchtime="$benchtime" -count="$count" -timeout 30m -v \
	2>&1 | tee "$out"
wall=$(($(date +%s) - start))
echo
echo "bench-rls: load average at end:$(uptime | sed 's/.*load average://')"

# "BenchmarkListProjects/rls-2   1234   2345678 ns/op ..." -> "rls 2345678"; then the median per name.
medians=$(
	awk '$1 ~ /^BenchmarkListProjects\// {
		name = $1; sub(/^BenchmarkListProjects\//, "", name); sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i + 1) == "ns/op") print name, $i
	}' "$out" |
		sort -k1,1 -k2,2g |
		awk '{ v[$1, ++n[$1]] = $2; if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 } }
		END {
			for (j = 1; j <= k; j++) {
				name = order[j]; c = n[name]
				m = (c % 2) ? v[name, (c + 1) / 2] : (v[name, c / 2] + v[name, c / 2 + 1]) / 2
				printf "%s %.0f %d\n", name, m, c
			}
		}'
)
if [ -z "$medians" ]; then
	echo "bench-rls: no benchmark results in $out" >&2
	exit 1
fi

echo "$medians" | awk -v wall="$wall" '
	{ med[$1] = $2; runs[$1] = $3 }
	function ratio(a, b, label) {
		if (!(a in med) || !(b in med) || med[b] == 0) { printf "%-38s %s\n", label, "n/a"; return }
		r = med[a] / med[b]
		printf "%-38s %6.2f   target <= 1.20: %s\n", label, r, (r <= 1.20 ? "met" : "NOT met")
	}
	END {
		printf "\n%-20s %14s %6s\n", "sub-benchmark", "median ns/op", "runs"
		n = split("rls bypass rls-query-only bypass-query-only", names, " ")
		for (i = 1; i <= n; i++) if (names[i] in med) printf "%-20s %14d %6d\n", names[i], med[names[i]], runs[names[i]]
		print ""
		ratio("rls", "bypass", "rls / bypass")
		ratio("rls-query-only", "bypass-query-only", "rls-query-only / bypass-query-only")
		printf "\ntotal wall time: %dm%02ds\n", wall / 60, wall % 60
	}'
