package stripetest

import (
	"bufio"
	"bytes"
	"context"
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Binary returns a stripe-mock executable and where it came from:
//
//   - "path": the first "stripe-mock" on PATH, in $(go env GOBIN) or in
//     $(go env GOPATH)/bin that is Version as far as it can tell. A binary
//     from a release reports its version with -version; one built by
//     `go install` reports "master", so its module version is read from the
//     Go build information embedded in it instead. A binary that reports
//     neither is used as is; one that reports another version is skipped.
//   - "cache": otherwise, os.UserCacheDir()/tenantkit/stripe-mock-<Version>/
//     stripe-mock, built with `go install github.com/stripe/stripe-mock@<Version>`
//     the first time. A file lock serializes installs by parallel test
//     processes, and the binary is moved into place only once complete.
func Binary(ctx context.Context) (bin, source string, err error) {
	var skipped []string
	for _, c := range candidates(ctx) {
		ok, why := acceptable(ctx, c)
		if ok {
			return c, "path", nil
		}
		skipped = append(skipped, c+" ("+why+")")
	}
	bin, err = installCached(ctx)
	if err != nil {
		if len(skipped) > 0 {
			err = fmt.Errorf("%w; skipped: %s", err, strings.Join(skipped, ", "))
		}
		return "", "", err
	}
	return bin, "cache", nil
}

func exeName() string {
	if runtime.GOOS == "windows" {
		return "stripe-mock.exe"
	}
	return "stripe-mock"
}

// candidates lists existing stripe-mock executables on PATH, in GOBIN and
// in each GOPATH's bin, without duplicates.
func candidates(ctx context.Context) []string {
	var paths []string
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		paths = append(paths, p)
	}
	if goBin, err := exec.LookPath("go"); err == nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "env", "GOBIN", "GOPATH")
		cmd.Dir = os.TempDir()
		if out, err := cmd.Output(); err == nil {
			// Two lines, the first empty when GOBIN is unset.
			lines := strings.Split(strings.TrimRight(string(out), "\r\n"), "\n")
			if len(lines) == 2 {
				if gobin := strings.TrimSpace(lines[0]); gobin != "" {
					paths = append(paths, filepath.Join(gobin, exeName()))
				}
				for _, gp := range filepath.SplitList(strings.TrimSpace(lines[1])) {
					if gp != "" {
						paths = append(paths, filepath.Join(gp, "bin", exeName()))
					}
				}
			}
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, p := range paths {
		abs, err := filepath.Abs(p)
		if err != nil || seen[abs] {
			continue
		}
		seen[abs] = true
		if fi, err := os.Stat(abs); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			out = append(out, abs)
		}
	}
	return out
}

// acceptable reports whether bin is stripe-mock Version, or a stripe-mock
// that cannot tell its version, and if not, why.
func acceptable(ctx context.Context, bin string) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-version")
	cmd.Dir = os.TempDir()
	out, err := cmd.CombinedOutput()
	if err != nil {
		return false, fmt.Sprintf("-version failed: %v", err)
	}
	// Prints "stripe-mock <version>"; <version> is set by the release
	// build (goreleaser) and is "master" for anything built from source.
	line, _, _ := bytes.Cut(out, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) != 2 || f[0] != "stripe-mock" {
		return false, fmt.Sprintf("-version printed %q", line)
	}
	if v := f[1]; v != "master" {
		if !strings.HasPrefix(v, "v") {
			v = "v" + v
		}
		if v != Version {
			return false, "version " + v
		}
		return true, ""
	}
	// Built from source: `go install module@version` records the version.
	v, ok := moduleVersion(bin)
	if ok && v != Version {
		return false, "module version " + v
	}
	return true, ""
}

// moduleVersion returns the version of Module that bin was built from, if
// bin is a Go binary of Module built at a released version.
func moduleVersion(bin string) (string, bool) {
	info, err := buildinfo.ReadFile(bin)
	if err != nil || info.Main.Path != Module || info.Main.Version == "" || info.Main.Version == "(devel)" {
		return "", false
	}
	return info.Main.Version, true
}

// cacheDir is where installCached keeps the binary.
func cacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		base = filepath.Join(os.TempDir(), "tenantkit-cache")
	}
	return filepath.Join(base, "tenantkit", "stripe-mock-"+Version), nil
}

// installCached returns the cached binary, installing it first if needed.
func installCached(ctx context.Context) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, exeName())
	if isCached(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("stripetest: %w", err)
	}
	unlock, err := lockFile(ctx, filepath.Join(dir, ".lock"))
	if err != nil {
		return "", fmt.Errorf("stripetest: lock %s: %w", dir, err)
	}
	defer unlock()
	if isCached(bin) { // installed by another process while we waited
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("stripetest: stripe-mock not found and no go command to install it (go install %s@%s): %w", Module, Version, err)
	}
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		return "", fmt.Errorf("stripetest: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, goBin, "install", Module+"@"+Version)
	cmd.Dir = tmp // outside any module: pkg@version ignores the current one anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("stripetest: go install %s@%s: %w\n%s", Module, Version, err, lastLines(out, 20))
	}
	if err := os.Rename(filepath.Join(tmp, exeName()), bin); err != nil {
		return "", fmt.Errorf("stripetest: %w", err)
	}
	if !isCached(bin) {
		return "", fmt.Errorf("stripetest: %s is not %s@%s after go install", bin, Module, Version)
	}
	return bin, nil
}

// isCached reports whether bin exists and was built from Module at Version.
func isCached(bin string) bool {
	fi, err := os.Stat(bin)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	v, ok := moduleVersion(bin)
	return ok && v == Version
}

func lastLines(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
