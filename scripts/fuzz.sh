#!/usr/bin/env bash
# fuzz.sh — `make fuzz`: every Go fuzz target of the module (func FuzzX(f *testing.F) in a
# _test.go file), one at a time, for FUZZTIME each, then a table of how many inputs each tried.
#
#   scripts/fuzz.sh                  every target, FUZZTIME (default 30s) each
#   scripts/fuzz.sh 'Stripe|Event'   only the targets whose name matches the (extended) regexp
#
# FUZZPARALLEL (default 2) is the number of fuzzing workers of a target; FUZZMINIMIZETIME (default
# 10s) bounds how long go test minimizes an input (its default, 60s, can take a short run whole).
# PostgreSQL is found as for `make test`. Exit status: non-zero when any target fails. go test then
# writes the failing input to <package>/testdata/fuzz/<FuzzX>/<hash>: fix the bug and keep the file,
# it is a regression seed from then on. New interesting inputs go to go's cache, not to testdata.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

fuzztime=${FUZZTIME:-30s}
parallel=${FUZZPARALLEL:-2}
minimize=${FUZZMINIMIZETIME:-10s}
pattern=${1:-.}
logs=$(mktemp -d "${TMPDIR:-/tmp}/tenantkit-fuzz.XXXXXX")

# "<package dir> <target>" per line, e.g. "cmd/tenantkit FuzzActionPayload" or ". FuzzAllows".
targets=$(grep -rEo --include='*_test.go' --exclude-dir=.dev --exclude-dir=vendor \
	'^func Fuzz[A-Za-z0-9_]*\(f \*testing\.F\)' . |
	sed -E 's#^\./(.*)/[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*#\1 \2#; s#^\./[^/]*_test\.go:func (Fuzz[A-Za-z0-9_]*).*#. \1#' |
	sort -u | awk -v p="$pattern" '$2 ~ p')
if [ -z "$targets" ]; then
	echo "fuzz: no fuzz target matches '$pattern'" >&2
	exit 2
fi
echo "fuzz: $(wc -l <<<"$targets") target(s), $fuzztime each, $parallel worker(s); logs in $logs"

# deadline_race LOG TARGET: the run failed only with "context deadline exceeded" at the end of
# FUZZTIME and wrote no failing input: the race of Go's fuzzing coordinator https://go.dev/issue/75804
# (fixed in Go 1.27), not a failure of the target.
deadline_race() {
	! grep -q 'Failing input written' "$1" &&
		[ "$(grep -c -- '--- FAIL' "$1")" = 1 ] &&
		grep -A1 -- "--- FAIL: $2 (" "$1" | tail -n 1 | grep -qx '    context deadline exceeded'
}

status=0
rows=()
while read -r pkg name; do
	log=$logs/$name.log
	printf '%-40s ' "$pkg $name"
	result=ok
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimize" \
		-parallel "$parallel" "./$pkg" </dev/null >"$log" 2>&1 || result=FAIL
	if [ "$result" = FAIL ] && deadline_race "$log" "$name"; then
		result="ok (https://go.dev/issue/75804 at the deadline)"
	fi
	# The last progress line: "fuzz: elapsed: 30s, execs: 123456 (4100/sec), new interesting: 3 (total: 40)".
	execs=$(grep -Eo 'execs: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f2 || true)
	interesting=$(grep -Eo 'new interesting: [0-9]+' "$log" | tail -n 1 | cut -d' ' -f3 || true)
	echo "$result"
	rows+=("$(printf '%-16s %-30s %12s %12s  %s' "$pkg" "$name" "${execs:--}" "${interesting:--}" "$result")")
	if [ "$result" = FAIL ]; then
		status=1
		sed -n '/--- FAIL\|panic:\|Failing input\|go test -run/,$p' "$log" | head -n 60 | sed 's/^/    /'
	fi
done <<<"$targets"

echo
printf '%-16s %-30s %12s %12s  %s\n' package target execs interesting result
for row in "${rows[@]}"; do
	echo "$row"
done
exit "$status"
