package stripetest

import (
	"os/exec"
	"syscall"
)

// setPdeathsig has the kernel kill stripe-mock if the test process dies
// without calling Stop (a panic, os.Exit, a timeout). Strictly, the signal
// fires when the OS thread that started it exits; Go keeps its threads
// alive unless a goroutine exits while locked to one (runtime.LockOSThread),
// which tests do not do around Start.
func setPdeathsig(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
