package alink

import (
	"fmt"
	"unicode/utf8"
)

// Failure is a refused device request: the reply's code, message and
// (optionally) data.
type Failure struct {
	Code int
	Msg  string
	Data any
}

func (f *Failure) Error() string { return f.Msg }

// Fail makes a Failure. String arguments (names and reasons taken from the
// request) are clipped, so a reply or a log line never carries more than
// MaxEchoed bytes of any one of them.
func Fail(code int, format string, args ...any) *Failure {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = Clip(s)
		}
	}
	return &Failure{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// MaxEchoed bounds how much of one request field a message repeats.
const MaxEchoed = 64

// Clip cuts s to at most MaxEchoed bytes on a character boundary, marking
// the cut with "…".
func Clip(s string) string {
	if len(s) <= MaxEchoed {
		return s
	}
	n := MaxEchoed
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
