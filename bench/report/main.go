// Command report turns the output of tenantkit's benchmarks (`go test ./bench -bench …`, on
// stdin) into the table `make bench` prints: one row per figure, with its baseline from the same
// run, the ratio, the target and whether it was met. See bench/README.md.
//
// Repeated runs of a sub-benchmark (name#01, name#02, … and -count) are reduced to their median.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

func main() {
	results, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(2)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "report: no benchmark results on stdin")
		os.Exit(2)
	}
	rows := table(results)
	print(os.Stdout, rows)
}

// results maps a benchmark name (without -GOMAXPROCS and #NN) and a unit to every value measured.
type results map[string]map[string][]float64

var line = regexp.MustCompile(`^(Benchmark\S+?)(#\d+)?(-\d+)?\s+\d+\s+(.*)$`)

func parse(r io.Reader) (results, error) {
	out := results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		name, fields := m[1], strings.Fields(m[4])
		for i := 0; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q: %w", name, fields[i], err)
			}
			if out[name] == nil {
				out[name] = map[string][]float64{}
			}
			out[name][fields[i+1]] = append(out[name][fields[i+1]], v)
		}
	}
	return out, sc.Err()
}

// ratio is the median over rounds of a's unit divided by b's, the rounds paired in the order they
// ran (the benchmarks interleave them, so each pair shares the machine's state of the moment);
// with unequal round counts, the ratio of the medians.
func (r results) ratio(a, ua, b, ub string) float64 {
	x, y := r[a][ua], r[b][ub]
	if len(x) == 0 || len(x) != len(y) {
		mx, _ := r.median(a, ua)
		my, _ := r.median(b, ub)
		return mx / my
	}
	qs := make([]float64, len(x))
	for i := range x {
		qs[i] = x[i] / y[i]
	}
	slices.Sort(qs)
	if len(qs)%2 == 1 {
		return qs[len(qs)/2]
	}
	return (qs[len(qs)/2-1] + qs[len(qs)/2]) / 2
}

// median of name's unit, and whether it was measured.
func (r results) median(name, unit string) (float64, bool) {
	vs := slices.Clone(r[name][unit])
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2], true
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2, true
}

// row is one line of the table. target is nil for a figure shown for information only.
type row struct {
	figure, value, baseline, ratio, target string
	met                                    *bool
}

func check(ok bool) *bool { return &ok }

func ms(ns float64) string { return fmt.Sprintf("%.3f ms", ns/1e6) }

func per(v float64, unit string) string { return fmt.Sprintf("%s %s", thousands(v), unit) }

func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

var sizes = []int{1_000, 10_000, 100_000}

func table(r results) []row {
	var rows []row
	const list = "BenchmarkListProjects/tenants=%d/%s"
	// The request without prepared statements has no target of its own: it shows what planning
	// every statement costs (tenantkit behind a transaction pooler), under the policies' helper form
	// installed there, and under the inline form for comparison.
	for _, kind := range []struct {
		suffix, rlsSuffix, label, form string
		limit                          float64
	}{
		{"", "", "request", "", 1.15},
		{"-query-only", "-query-only", "statement", "", 1.30},
		{"-unprepared", "-unprepared", "request without prepared statements", ", helper form", 0},
		{"-unprepared", "-unprepared-inline", "request without prepared statements", ", inline form", 0},
	} {
		for _, n := range sizes {
			rlsName, bypassName := fmt.Sprintf(list, n, "rls"+kind.rlsSuffix), fmt.Sprintf(list, n, "bypass"+kind.suffix)
			naiveName := fmt.Sprintf(list, n, "naive"+kind.suffix)
			rls, ok1 := r.median(rlsName, "ns/op")
			bypass, ok2 := r.median(bypassName, "ns/op")
			naive, ok3 := r.median(naiveName, "ns/op")
			if !ok1 || !ok2 {
				continue
			}
			q := r.ratio(rlsName, "ns/op", bypassName, "ns/op")
			rw := row{
				figure: fmt.Sprintf("RLS, list projects, %s%s, %s tenants", kind.label, kind.form, thousands(float64(n))),
				value:  ms(rls), baseline: "bypass " + ms(bypass), ratio: fmt.Sprintf("%.2f", q),
			}
			if kind.limit > 0 {
				rw.target, rw.met = fmt.Sprintf("ratio ≤ %.2f", kind.limit), check(q <= kind.limit)
			}
			rows = append(rows, rw)
			if ok3 && kind.rlsSuffix == kind.suffix { // once per kind of baseline
				rows = append(rows, row{
					figure: fmt.Sprintf("  guide's policy, %s, %s tenants", kind.label, thousands(float64(n))),
					value:  ms(naive), baseline: "bypass " + ms(bypass), ratio: fmt.Sprintf("%.2f", r.ratio(naiveName, "ns/op", bypassName, "ns/op")),
				})
			}
		}
	}
	for _, n := range sizes {
		name := fmt.Sprintf(list, n, "buffers")
		setting, ok := r.median(name, "shared-buffers-MiB")
		if !ok {
			continue
		}
		relations, _ := r.median(name, "relations-MiB")
		held := "not measured (no pg_buffercache)"
		if cached, ok := r.median(name, "cached-MiB"); ok {
			held = fmt.Sprintf("%.0f MiB", cached)
		}
		rows = append(rows, row{
			figure: fmt.Sprintf("  shared_buffers, %s tenants", thousands(float64(n))), value: fmt.Sprintf("%.0f MiB", setting),
			baseline: fmt.Sprintf("statement's relations %.0f MiB, held %s", relations, held),
		})
	}
	for _, kind := range []struct{ suffix, label string }{{"", "request"}, {"-query-only", "statement"}} {
		smallName, largeName := fmt.Sprintf(list, sizes[0], "rls"+kind.suffix), fmt.Sprintf(list, sizes[len(sizes)-1], "rls"+kind.suffix)
		small, ok1 := r.median(smallName, "ns/op")
		large, ok2 := r.median(largeName, "ns/op")
		if ok1 && ok2 {
			// The datasets are measured one after the other, not interleaved: a ratio of medians.
			q := large / small
			rows = append(rows, row{
				figure: "RLS growth, " + kind.label + ", 100,000 vs 1,000 tenants", value: ms(large), baseline: "1,000: " + ms(small),
				ratio: fmt.Sprintf("%.2f", q), target: "ratio ≤ 1.20", met: check(q <= 1.20),
			})
		}
	}
	const cp = "BenchmarkCheckPermission"
	if v, ok := r.median(cp, "checks/s"); ok {
		base, _ := r.median(cp, "healthz/s")
		direct, _ := r.median(cp, "pgx/s")
		toPgx, _ := r.median(cp, "ratio-pgx")
		toHealthz, _ := r.median(cp, "ratio-healthz")
		rows = append(rows, row{figure: "checkPermission, highest rate, no errors", value: per(v, "/s"),
			baseline: "its statement through pgx " + per(direct, "/s"), ratio: fmt.Sprintf("%.2f", toPgx),
			target: "ratio ≥ 0.70", met: check(toPgx >= 0.70)})
		rows = append(rows, row{figure: "  the same, against GET /healthz", value: per(v, "/s"),
			baseline: "GET /healthz " + per(base, "/s"), ratio: fmt.Sprintf("%.2f", toHealthz),
			target: "ratio ≥ 0.35", met: check(toHealthz >= 0.35)})
		p50, _ := r.median(cp, "p50-ms@25%")
		p99, _ := r.median(cp, "p99-ms@25%")
		at, _ := r.median(cp, "achieved/s@25%")
		tail, _ := r.median(cp, "p99/p50@25%")
		lag, _ := r.median(cp, "lag-p99-ms@25%")
		rows = append(rows, row{figure: "checkPermission at 25 % of its highest rate, p50", value: fmt.Sprintf("%.2f ms", p50),
			baseline: "at " + per(at, "/s")})
		rows = append(rows, row{figure: "checkPermission at 25 % of its highest rate, p99", value: fmt.Sprintf("%.2f ms", p99),
			baseline: fmt.Sprintf("p50; generator lag p99 %.2f ms", lag), ratio: fmt.Sprintf("%.2f", tail),
			target: "ratio ≤ 4", met: check(tail <= 4)})
		if inP99, ok := r.median(cp, "handler-p99-ms@25%"); ok {
			inP50, _ := r.median(cp, "handler-p50-ms@25%")
			inTail, _ := r.median(cp, "handler-p99/p50@25%")
			rows = append(rows, row{figure: "  the same inside the service's handlers (its request log), p99", value: fmt.Sprintf("%.2f ms", inP99),
				baseline: fmt.Sprintf("p50 %.2f ms", inP50), ratio: fmt.Sprintf("%.2f", inTail)})
		}
		idle, _ := r.median(cp, "idle-MiB")
		loaded, _ := r.median(cp, "loaded-MiB")
		rows = append(rows, row{figure: "memory (RSS) of tenantkit serve, idle", value: fmt.Sprintf("%.1f MiB", idle),
			target: "< 50 MiB", met: check(idle < 50)})
		rows = append(rows, row{figure: "memory (RSS), after the checkPermission load", value: fmt.Sprintf("%.1f MiB", loaded),
			target: "< 200 MiB", met: check(loaded < 200)})
	}
	const us = "BenchmarkUsageIngestion"
	if v, ok := r.median(us, "events/s"); ok {
		guide, _ := r.median(us, "guide-events/s")
		rows = append(rows, row{figure: "usage ingestion, batches of 1,000", value: per(v, "events/s"),
			baseline: "guide's upsert " + per(guide, "/s"), ratio: fmt.Sprintf("%.1f", v/guide),
			target: "≥ 100,000/s and ratio ≥ 20", met: check(v >= 100_000 && v/guide >= 20)})
		if f, ok := r.median(us, "folded-events/s"); ok {
			rows = append(rows, row{figure: "  the same, until folded into billing_usage", value: per(f, "events/s")})
		}
	}
	const wh = "BenchmarkWebhooks"
	if v, ok := r.median(wh, "events/s"); ok {
		clean, _ := r.median(wh, "clean-events/s")
		rows = append(rows, row{figure: "Stripe webhooks, 20% duplicates, shuffled", value: per(v, "events/s"),
			baseline: "clean, in order " + per(clean, "/s"), ratio: fmt.Sprintf("%.2f", v/clean),
			target: "≥ 1,000/s", met: check(v >= 1_000)})
	}
	const rt = "BenchmarkRetention"
	if q, ok := r.median(rt, "total-ratio-18/13"); ok {
		u13, _ := r.median(rt, "usage-MiB@13")
		u18, _ := r.median(rt, "usage-MiB@18")
		l13, _ := r.median(rt, "ledgers-MiB@13")
		l18, _ := r.median(rt, "ledgers-MiB@18")
		rows = append(rows, row{figure: "bounded tables: size after 18 simulated months", value: fmt.Sprintf("%.1f MiB", u18+l18),
			baseline: fmt.Sprintf("after 13 months %.1f MiB", u13+l13), ratio: fmt.Sprintf("%.2f", q),
			target: "ratio ≤ 1.10", met: check(q <= 1.10)})
		rows = append(rows, row{figure: "  usage_events (13 months kept)", value: fmt.Sprintf("%.1f MiB", u18),
			baseline: fmt.Sprintf("after 13 months %.1f MiB", u13), ratio: fmt.Sprintf("%.2f", u18/u13)})
		rows = append(rows, row{figure: "  ledgers and outboxes", value: fmt.Sprintf("%.1f MiB", l18),
			baseline: fmt.Sprintf("after 13 months %.1f MiB", l13), ratio: fmt.Sprintf("%.2f", l18/l13)})
	}
	const pb = "BenchmarkPooler"
	kinds := []struct{ key, label string }{{"check", "checkPermission"}, {"tx", "user transaction"}}
	for _, k := range kinds {
		direct, ok1 := r.median(pb, "direct-"+k.key+"-p50-ms")
		pooled, ok2 := r.median(pb, "pgbouncer-exec-"+k.key+"-p50-ms")
		if !ok1 || !ok2 {
			continue
		}
		rows = append(rows, row{figure: fmt.Sprintf("PgBouncer (transaction pooling), %s p50 at 400/s", k.label),
			value: fmt.Sprintf("%.2f ms", pooled), baseline: fmt.Sprintf("direct %.2f ms", direct), ratio: fmt.Sprintf("%.2f", pooled/direct)})
	}
	for _, mode := range []struct{ config, label string }{
		{"direct-exec", "mode exec, direct"}, {"direct-simple", "mode simple_protocol, direct"}, {"pgbouncer-simple", "mode simple_protocol, PgBouncer"},
	} {
		for _, k := range kinds {
			direct, ok1 := r.median(pb, "direct-"+k.key+"-p50-ms")
			v, ok2 := r.median(pb, mode.config+"-"+k.key+"-p50-ms")
			if ok1 && ok2 {
				rows = append(rows, row{figure: fmt.Sprintf("  %s, %s p50", mode.label, k.label), value: fmt.Sprintf("%.2f ms", v),
					baseline: fmt.Sprintf("direct %.2f ms", direct), ratio: fmt.Sprintf("%.2f", v/direct)})
			}
		}
	}
	return rows
}

func print(w io.Writer, rows []row) {
	head := row{figure: "figure", value: "measured", baseline: "baseline (same run)", ratio: "ratio", target: "target"}
	width := [5]int{}
	cells := func(r row) [6]string {
		met := ""
		if r.met != nil {
			met = map[bool]string{true: "met", false: "NOT met"}[*r.met]
		}
		return [6]string{r.figure, r.value, r.baseline, r.ratio, r.target, met}
	}
	for _, r := range append([]row{head}, rows...) {
		c := cells(r)
		for i := range width {
			width[i] = max(width[i], len([]rune(c[i])))
		}
	}
	pad := func(s string, n int) string { return s + strings.Repeat(" ", n-len([]rune(s))) }
	for i, r := range append([]row{head}, rows...) {
		c := cells(r)
		if i == 0 {
			c[5] = "met?"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", pad(c[0], width[0]), pad(c[1], width[1]), pad(c[2], width[2]),
			pad(c[3], width[3]), pad(c[4], width[4]), c[5])
		if i == 0 {
			fmt.Fprintf(w, "|%s|%s|%s|%s|%s|---|\n", strings.Repeat("-", width[0]+2), strings.Repeat("-", width[1]+2),
				strings.Repeat("-", width[2]+2), strings.Repeat("-", width[3]+2), strings.Repeat("-", width[4]+2))
		}
	}
	notMet := 0
	for _, r := range rows {
		if r.met != nil && !*r.met {
			notMet++
		}
	}
	fmt.Fprintf(w, "\n%d figures, %d targets not met\n", len(rows), notMet)
}
