//go:build !linux

package pgbouncer

import "syscall"

func setDeathSignal(*syscall.SysProcAttr) {}
