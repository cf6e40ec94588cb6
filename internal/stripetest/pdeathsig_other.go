//go:build !linux

package stripetest

import "os/exec"

// setPdeathsig is Linux-only; elsewhere a test process that dies without
// Stop leaves stripe-mock running.
func setPdeathsig(cmd *exec.Cmd) {}
