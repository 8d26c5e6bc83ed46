package formats

// A small, strict RDF Turtle reader for AFF4's information.turtle: prefix
// directives, IRIs, prefixed names, blank node labels and [ ] property
// lists, string literals with a datatype or language tag, bare numbers and
// booleans, and object lists separated by ',' and ';'. Everything else
// (collections, @base, relative IRIs) is an error: a volume's metadata is
// evidence, and guessing at what a malformed file means is worse than
// refusing it. Sizes are bounded so a crafted file cannot exhaust memory.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

const (
	turtleMaxBytes   = 16 << 20 // information.turtle size
	turtleMaxTriples = 1 << 18
	turtleMaxDepth   = 16 // nested [ ] property lists
)

// rdfType is the IRI the keyword "a" stands for.
const rdfType = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"

type termKind uint8

const (
	termIRI termKind = iota
	termBlank
	termLiteral
)

// term is one RDF node: an IRI, a blank node label, or a literal with its
// datatype IRI (empty for a plain string) and language tag.
type term struct {
	Kind     termKind
	Value    string
	Datatype string
	Lang     string
}

type triple struct {
	S, P string // subject (IRI or "_:label") and predicate IRI
	O    term
}

type turtleParser struct {
	src      string
	pos      int
	prefixes map[string]string
	triples  []triple
	blanks   int
	depth    int
}

// parseTurtle returns the triples of src in document order.
func parseTurtle(src []byte) ([]triple, error) {
	if len(src) > turtleMaxBytes {
		return nil, fmt.Errorf("turtle: %d bytes, more than the %d allowed", len(src), turtleMaxBytes)
	}
	if !utf8.Valid(src) {
		return nil, errors.New("turtle: not UTF-8")
	}
	p := &turtleParser{src: string(src), prefixes: map[string]string{}}
	for {
		p.skipSpace()
		if p.pos >= len(p.src) {
			return p.triples, nil
		}
		if err := p.statement(); err != nil {
			return nil, fmt.Errorf("turtle: line %d: %w", p.line(), err)
		}
	}
}

func (p *turtleParser) line() int { return 1 + strings.Count(p.src[:p.pos], "\n") }

func (p *turtleParser) skipSpace() {
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			p.pos++
		case c == '#':
			for p.pos < len(p.src) && p.src[p.pos] != '\n' {
				p.pos++
			}
		default:
			return
		}
	}
}

func (p *turtleParser) peek() byte {
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *turtleParser) expect(c byte) error {
	p.skipSpace()
	if p.peek() != c {
		return fmt.Errorf("expected %q, found %s", c, p.found())
	}
	p.pos++
	return nil
}

func (p *turtleParser) found() string {
	if p.pos >= len(p.src) {
		return "end of file"
	}
	end := min(len(p.src), p.pos+20)
	return strconv.Quote(p.src[p.pos:end])
}

func (p *turtleParser) statement() error {
	if strings.HasPrefix(p.src[p.pos:], "@prefix") {
		p.pos += len("@prefix")
		return p.prefix(true)
	}
	if len(p.src)-p.pos >= 7 && strings.EqualFold(p.src[p.pos:p.pos+7], "PREFIX ") {
		p.pos += 6
		return p.prefix(false)
	}
	if p.peek() == '@' {
		return fmt.Errorf("unsupported directive %s", p.found())
	}
	var subj string
	if p.peek() == '[' {
		p.pos++
		s, err := p.blankList()
		if err != nil {
			return err
		}
		subj = s
		p.skipSpace()
		if p.peek() == '.' { // "[ ... ] ." alone
			p.pos++
			return nil
		}
	} else {
		t, err := p.node()
		if err != nil {
			return err
		}
		if t.Kind == termLiteral {
			return errors.New("a literal cannot be a subject")
		}
		subj = t.Value
	}
	if err := p.predicateObjects(subj, '.'); err != nil {
		return err
	}
	return p.expect('.')
}

func (p *turtleParser) prefix(dot bool) error {
	p.skipSpace()
	start := p.pos
	for p.pos < len(p.src) && p.src[p.pos] != ':' && isNameChar(p.src[p.pos]) {
		p.pos++
	}
	if p.peek() != ':' {
		return fmt.Errorf("bad prefix name %s", p.found())
	}
	name := p.src[start:p.pos]
	p.pos++
	p.skipSpace()
	iri, err := p.iriRef()
	if err != nil {
		return err
	}
	p.prefixes[name] = iri
	if dot {
		return p.expect('.')
	}
	return nil
}

// predicateObjects reads "pred obj, obj ; pred obj ..." up to (not
// including) the closing byte end.
func (p *turtleParser) predicateObjects(subj string, end byte) error {
	for {
		p.skipSpace()
		var pred string
		if p.peek() == 'a' && p.pos+1 < len(p.src) && !isNameChar(p.src[p.pos+1]) && p.src[p.pos+1] != ':' {
			p.pos++
			pred = rdfType
		} else {
			t, err := p.node()
			if err != nil {
				return err
			}
			if t.Kind != termIRI {
				return errors.New("a predicate must be an IRI")
			}
			pred = t.Value
		}
		for {
			p.skipSpace()
			var o term
			if p.peek() == '[' {
				p.pos++
				b, err := p.blankList()
				if err != nil {
					return err
				}
				o = term{Kind: termBlank, Value: b}
			} else {
				t, err := p.object()
				if err != nil {
					return err
				}
				o = t
			}
			if len(p.triples) >= turtleMaxTriples {
				return fmt.Errorf("more than %d statements", turtleMaxTriples)
			}
			p.triples = append(p.triples, triple{subj, pred, o})
			p.skipSpace()
			if p.peek() != ',' {
				break
			}
			p.pos++
		}
		if p.peek() != ';' {
			return nil
		}
		// One or more ';', possibly trailing before the end.
		for p.peek() == ';' {
			p.pos++
			p.skipSpace()
		}
		if p.peek() == end {
			return nil
		}
	}
}

// blankList reads the inside of "[ ... ]" (after '[') and returns the
// new blank node's label.
func (p *turtleParser) blankList() (string, error) {
	if p.depth >= turtleMaxDepth {
		return "", errors.New("blank nodes nested too deep")
	}
	p.depth++
	defer func() { p.depth-- }()
	p.blanks++
	label := "_:anon" + strconv.Itoa(p.blanks)
	p.skipSpace()
	if p.peek() != ']' {
		if err := p.predicateObjects(label, ']'); err != nil {
			return "", err
		}
	}
	return label, p.expect(']')
}

// object reads an object: a node, a literal, a number or a boolean.
func (p *turtleParser) object() (term, error) {
	switch c := p.peek(); {
	case c == '"' || c == '\'':
		return p.literal()
	case c == '+' || c == '-' || c >= '0' && c <= '9':
		start := p.pos
		p.pos++
		for p.pos < len(p.src) && (p.src[p.pos] >= '0' && p.src[p.pos] <= '9' || p.src[p.pos] == '.' && p.pos+1 < len(p.src) && p.src[p.pos+1] >= '0' && p.src[p.pos+1] <= '9') {
			p.pos++
		}
		v := p.src[start:p.pos]
		dt := "http://www.w3.org/2001/XMLSchema#integer"
		if strings.Contains(v, ".") {
			dt = "http://www.w3.org/2001/XMLSchema#decimal"
		}
		return term{Kind: termLiteral, Value: v, Datatype: dt}, nil
	case c == '(':
		return term{}, errors.New("RDF collections are not supported")
	}
	for _, b := range []string{"true", "false"} {
		if strings.HasPrefix(p.src[p.pos:], b) && (p.pos+len(b) == len(p.src) || !isNameChar(p.src[p.pos+len(b)]) && p.src[p.pos+len(b)] != ':') {
			p.pos += len(b)
			return term{Kind: termLiteral, Value: b, Datatype: "http://www.w3.org/2001/XMLSchema#boolean"}, nil
		}
	}
	return p.node()
}

// node reads an IRI, a prefixed name or a blank node label.
func (p *turtleParser) node() (term, error) {
	p.skipSpace()
	switch {
	case p.peek() == '<':
		v, err := p.iriRef()
		return term{Kind: termIRI, Value: v}, err
	case strings.HasPrefix(p.src[p.pos:], "_:"):
		p.pos += 2
		start := p.pos
		p.scanLocal()
		if p.pos == start {
			return term{}, errors.New("empty blank node label")
		}
		return term{Kind: termBlank, Value: "_:" + p.src[start:p.pos]}, nil
	}
	start := p.pos
	for p.pos < len(p.src) && isNameChar(p.src[p.pos]) && p.src[p.pos] != '.' {
		p.pos++
	}
	if p.peek() != ':' {
		p.pos = start
		return term{}, fmt.Errorf("expected an IRI or a prefixed name, found %s", p.found())
	}
	pfx := p.src[start:p.pos]
	p.pos++
	base, ok := p.prefixes[pfx]
	if !ok {
		return term{}, fmt.Errorf("undefined prefix %q", pfx)
	}
	ls := p.pos
	p.scanLocal()
	local, err := unescapeLocal(p.src[ls:p.pos])
	if err != nil {
		return term{}, err
	}
	return term{Kind: termIRI, Value: base + local}, nil
}

// scanLocal advances over a local name: name characters and '%XX'
// escapes, with '.' allowed inside but not at the end.
func (p *turtleParser) scanLocal() {
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		if c == '.' {
			if p.pos+1 < len(p.src) && (isNameChar(p.src[p.pos+1]) || p.src[p.pos+1] == ':') {
				p.pos++
				continue
			}
			return
		}
		if !isNameChar(c) && c != ':' && c != '%' && c != '\\' {
			return
		}
		if c == '\\' {
			p.pos++ // PN_LOCAL_ESC: the next byte is literal
		}
		p.pos++
	}
}

func unescapeLocal(s string) (string, error) {
	if !strings.Contains(s, "\\") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			if i+1 >= len(s) || !strings.ContainsRune("_~.-!$&'()*+,;=/?#@%", rune(s[i+1])) {
				return "", errors.New("bad escape in a local name")
			}
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String(), nil
}

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c >= 0x80
}

// iriRef reads "<...>". Only absolute IRIs are allowed: without @base a
// relative one has no meaning.
func (p *turtleParser) iriRef() (string, error) {
	if p.peek() != '<' {
		return "", fmt.Errorf("expected an IRI, found %s", p.found())
	}
	end := strings.IndexByte(p.src[p.pos:], '>')
	if end < 0 {
		return "", errors.New("unterminated IRI")
	}
	v := p.src[p.pos+1 : p.pos+end]
	if strings.ContainsAny(v, " <\"{}|^`\\\n\t") {
		return "", fmt.Errorf("bad character in IRI %q", v)
	}
	if !strings.Contains(v, ":") {
		return "", fmt.Errorf("relative IRI %q", v)
	}
	p.pos += end + 1
	return v, nil
}

// literal reads a quoted string (short or long form) and its optional
// language tag or datatype.
func (p *turtleParser) literal() (term, error) {
	q := p.src[p.pos]
	long := strings.HasPrefix(p.src[p.pos:], strings.Repeat(string(q), 3))
	delim := string(q)
	if long {
		delim = strings.Repeat(delim, 3)
	}
	p.pos += len(delim)
	var b strings.Builder
	for {
		if p.pos >= len(p.src) {
			return term{}, errors.New("unterminated string")
		}
		if strings.HasPrefix(p.src[p.pos:], delim) {
			p.pos += len(delim)
			break
		}
		c := p.src[p.pos]
		if !long && (c == '\n' || c == '\r') {
			return term{}, errors.New("newline in a short string")
		}
		if c != '\\' {
			b.WriteByte(c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.src) {
			return term{}, errors.New("unterminated string")
		}
		e := p.src[p.pos+1]
		p.pos += 2
		switch e {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case '"', '\'', '\\':
			b.WriteByte(e)
		case 'u', 'U':
			n := 4
			if e == 'U' {
				n = 8
			}
			if p.pos+n > len(p.src) {
				return term{}, errors.New("short \\u escape")
			}
			r, err := strconv.ParseUint(p.src[p.pos:p.pos+n], 16, 32)
			if err != nil || !utf8.ValidRune(rune(r)) {
				return term{}, errors.New("bad \\u escape")
			}
			b.WriteRune(rune(r))
			p.pos += n
		default:
			return term{}, fmt.Errorf("bad escape \\%c", e)
		}
	}
	t := term{Kind: termLiteral, Value: b.String()}
	switch {
	case p.peek() == '@':
		p.pos++
		start := p.pos
		for p.pos < len(p.src) && (isNameChar(p.src[p.pos]) && p.src[p.pos] != '.') {
			p.pos++
		}
		if p.pos == start {
			return term{}, errors.New("empty language tag")
		}
		t.Lang = p.src[start:p.pos]
	case strings.HasPrefix(p.src[p.pos:], "^^"):
		p.pos += 2
		dt, err := p.node()
		if err != nil {
			return term{}, err
		}
		if dt.Kind != termIRI {
			return term{}, errors.New("a datatype must be an IRI")
		}
		t.Datatype = dt.Value
	}
	return t, nil
}
