package spec

import (
	"encoding/json"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/zclconf/go-cty/cty"
)

// redactedText replaces a sensitive value in diagnostics.
const redactedText = "(sensitive value)"

// noteSecret records the primitive leaves of a value that derives from a
// sensitive variable, so that redact can remove them from diagnostics.
func (l *loader) noteSecret(v cty.Value) {
	// evaluation runs on several goroutines that share l.secrets
	l.secretsMu.Lock()
	defer l.secretsMu.Unlock()
	l.noteSecretLocked(v)
}

func (l *loader) noteSecretLocked(v cty.Value) {
	v, _ = v.UnmarkDeep()
	if v.IsNull() || !v.IsKnown() {
		return
	}
	ty := v.Type()
	switch {
	case ty == cty.String:
		l.secrets[v.AsString()] = true
	case ty == cty.Number:
		l.secrets[v.AsBigFloat().Text('f', -1)] = true
	case ty.IsCollectionType() || ty.IsObjectType() || ty.IsTupleType():
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if ty.IsMapType() || ty.IsObjectType() {
				l.noteSecretLocked(k)
			}
			l.noteSecretLocked(e)
		}
	}
}

// redact removes every recorded sensitive value from the diagnostics'
// summaries and details: error messages quote what they refuse, and a
// value derived from a sensitive variable must never be printed. Quoted
// occurrences are replaced whatever their length; bare ones only from four
// characters, so that short values do not garble unrelated text.
func (l *loader) redact() {
	if len(l.secrets) == 0 {
		return
	}
	secrets := make([]string, 0, len(l.secrets))
	for s := range l.secrets {
		if s != "" {
			secrets = append(secrets, s)
		}
	}
	// longest first, so that a secret containing another is removed whole
	sort.Slice(secrets, func(i, j int) bool {
		if len(secrets[i]) != len(secrets[j]) {
			return len(secrets[i]) > len(secrets[j])
		}
		return secrets[i] < secrets[j]
	})
	scrub := func(text string) string {
		for _, s := range secrets {
			text = strings.ReplaceAll(text, strconv.Quote(s), redactedText)
			if len(s) >= 4 {
				text = strings.ReplaceAll(text, s, redactedText)
			}
		}
		return text
	}
	for _, d := range l.diags {
		d.Summary = scrub(d.Summary)
		d.Detail = scrub(d.Detail)
	}
	l.cfg.redactor = NewRedactor(secrets...)
}

// RedactedText is what a sensitive value is replaced by wherever orch
// writes text: errors, events, the state file, status, plans and the agent
// API.
const RedactedText = redactedText

// MinRedactLength is the length from which a sensitive value is removed
// from free text by a Redactor: a shorter one ("1", "on") would garble
// unrelated text, and is not much of a secret.
const MinRedactLength = 4

// Redactor replaces the clear text of sensitive values with
// "(sensitive value)". The nil Redactor changes nothing. It is safe for
// concurrent use.
type Redactor struct {
	secrets []string // sorted, distinct, each at least MinRedactLength long
	r       *strings.Replacer
}

// NewRedactor returns a Redactor of secrets (values shorter than
// MinRedactLength, and bare numbers, are left out), or nil when none is
// left. Besides each
// value as it is, its forms as written in JSON and in a URL are removed.
func NewRedactor(secrets ...string) *Redactor {
	set := map[string]bool{}
	for _, s := range secrets {
		if len(s) < MinRedactLength {
			continue
		}
		if _, err := strconv.ParseFloat(s, 64); err == nil {
			// A bare number (a sensitive port) cannot be told from a
			// pid, a time or a count: removing it would garble the JSON
			// orch writes. Text derived from it ("host:8443") still goes.
			continue
		}
		set[s] = true
		// the forms the value takes inside text orch writes: a JSON
		// string, an URL's user info, path or query
		if b, err := json.Marshal(s); err == nil && len(b) >= 2 {
			set[string(b[1:len(b)-1])] = true
		}
		set[strings.Trim(strconv.Quote(s), `"`)] = true
		set[url.PathEscape(s)] = true
		set[url.QueryEscape(s)] = true
		set[url.UserPassword("", s).String()[1:]] = true
	}
	if len(set) == 0 {
		return nil
	}
	out := &Redactor{secrets: make([]string, 0, len(set))}
	for s := range set {
		if len(s) >= MinRedactLength {
			out.secrets = append(out.secrets, s)
		}
	}
	// longest first: a strings.Replacer tries its old strings in argument
	// order at each position, so a secret containing another goes whole
	sort.Slice(out.secrets, func(i, j int) bool {
		a, b := out.secrets[i], out.secrets[j]
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	pairs := make([]string, 0, 2*len(out.secrets))
	for _, s := range out.secrets {
		pairs = append(pairs, s, redactedText)
	}
	out.r = strings.NewReplacer(pairs...)
	return out
}

// Redact returns s without any sensitive value.
func (r *Redactor) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	return r.r.Replace(s)
}

// Secrets returns the strings r removes (for merging Redactors).
func (r *Redactor) Secrets() []string {
	if r == nil {
		return nil
	}
	return append([]string(nil), r.secrets...)
}

// Union returns a Redactor removing what r and o remove (r or o itself
// when the other adds nothing).
func (r *Redactor) Union(o *Redactor) *Redactor {
	switch {
	case o == nil:
		return r
	case r == nil:
		return o
	}
	have := make(map[string]bool, len(r.secrets))
	for _, s := range r.secrets {
		have[s] = true
	}
	news := false
	for _, s := range o.secrets {
		if !have[s] {
			news = true
			break
		}
	}
	if !news {
		return r
	}
	return NewRedactor(append(r.Secrets(), o.secrets...)...)
}

// Redactor returns the Redactor of c's sensitive values: the values of its
// sensitive variables and of every attribute derived from one. Nil when
// there are none.
func (c *Config) Redactor() *Redactor {
	if c == nil {
		return nil
	}
	return c.redactor
}

// Redact returns s without any of c's sensitive values.
func (c *Config) Redact(s string) string { return c.Redactor().Redact(s) }

// RedactError returns err with its text redacted by r; the result still
// unwraps to err, so errors.Is and errors.As see what they saw.
func RedactError(r *Redactor, err error) error {
	if r == nil || err == nil {
		return err
	}
	msg := err.Error()
	red := r.Redact(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
