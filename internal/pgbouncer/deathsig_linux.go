package pgbouncer

import "syscall"

// setDeathSignal has the kernel stop PgBouncer when the test process dies (a test binary killed
// at its timeout runs no cleanup).
func setDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
