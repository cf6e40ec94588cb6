package main

import (
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
)

// The values of LOG_FORMAT.
const (
	logConsole = "console"
	logJSON    = "json"
)

// logFormat resolves LOG_FORMAT for the writer the logs go to: the format asked for, or, unset,
// console when out is a terminal (a person reads it) and json otherwise (a collector reads it).
func logFormat(format string, out io.Writer) string {
	if format != "" {
		return format
	}
	if isTerminal(out) {
		return logConsole
	}
	return logJSON
}

// isTerminal reports whether w is a terminal (not a file, pipe, /dev/null or buffer).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}

// newLogger is the service's logger on out: JSON lines, or with format console zerolog's
// ConsoleWriter (time, level, message, then key=value fields), colored on a terminal unless
// NO_COLOR is set, and without the service field every JSON line carries.
func newLogger(out io.Writer, format string, level zerolog.Level) zerolog.Logger {
	w := out
	if format == logConsole {
		w = zerolog.ConsoleWriter{Out: out, TimeFormat: time.TimeOnly, NoColor: !isTerminal(out),
			FieldsExclude: []string{"service"}}
	}
	return zerolog.New(w).Level(level).With().Timestamp().Str("service", "tenantkit").Logger()
}
