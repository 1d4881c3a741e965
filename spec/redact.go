package spec

import (
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
}
