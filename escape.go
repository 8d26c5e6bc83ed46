package main

import (
	"fmt"
	"io"
	"strings"
	"unicode"
	"unicode/utf8"
)

// escapeText makes text from outside (paths, names, strings read from
// images) safe to print on one line of the status file, the log or
// info: control characters, backslashes and invalid UTF-8 become Go
// escapes (\n, \x1b, \\), so a crafted name cannot forge a line or
// drive a terminal. Printable text, non-ASCII included, stays as is.
func escapeText(s string) string {
	i := strings.IndexFunc(s, func(r rune) bool { return r == '\\' || r == utf8.RuneError || !unicode.IsPrint(r) && r != ' ' })
	if i < 0 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:i])
	for i < len(s) {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80 && !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\x%02x`, r)
		case !unicode.IsPrint(r) && r != ' ':
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// escapeLines wraps a log destination so that every record is escaped
// but its final newline: one record, one line, whatever it quotes.
func escapeLines(w io.Writer) io.Writer { return lineEscaper{w} }

type lineEscaper struct{ w io.Writer }

func (l lineEscaper) Write(p []byte) (int, error) {
	s := strings.TrimSuffix(string(p), "\n")
	if _, err := io.WriteString(l.w, escapeText(s)+"\n"); err != nil {
		return 0, err
	}
	return len(p), nil
}
