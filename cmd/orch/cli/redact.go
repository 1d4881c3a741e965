package cli

import (
	"io"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/spec"
)

// redactWriter removes, from each write, the sensitive values of the
// configurations the App has loaded (a.redactor): the value of a variable
// declared sensitive, or of anything derived from one, never reaches the
// terminal, whether it comes quoted by an error (a command not found, a
// health URL that does not answer), an event or a status. Each write is
// redacted whole; orch writes a line or a block at a time.
type redactWriter struct {
	w io.Writer
	a *App
}

func (a *App) redacting(w io.Writer) io.Writer {
	if w == nil {
		return nil
	}
	if _, ok := w.(*redactWriter); ok {
		return w
	}
	return &redactWriter{w: w, a: a}
}

func (r *redactWriter) Write(p []byte) (int, error) {
	rd := r.a.redactor.Load()
	if rd == nil {
		return r.w.Write(p)
	}
	red := rd.Redact(string(p))
	if _, err := io.WriteString(r.w, red); err != nil {
		return 0, err
	}
	return len(p), nil
}

// noteSecrets adds cfg's sensitive values to those never written.
func (a *App) noteSecrets(cfg *spec.Config) {
	r := cfg.Redactor()
	if r == nil {
		return
	}
	for {
		old := a.redactor.Load()
		if a.redactor.CompareAndSwap(old, old.Union(r)) {
			return
		}
	}
}

// fileOf returns the file w writes to, for terminal checks.
func fileOf(w io.Writer) (*os.File, bool) {
	if r, ok := w.(*redactWriter); ok {
		w = r.w
	}
	f, ok := w.(*os.File)
	return f, ok
}

// redactDiags returns diags with the sensitive values removed from their
// summaries and details, before they are wrapped for the terminal (a
// value split over two lines would escape redactWriter).
func (a *App) redactDiags(diags hcl.Diagnostics) hcl.Diagnostics {
	rd := a.redactor.Load()
	if rd == nil {
		return diags
	}
	out := make(hcl.Diagnostics, len(diags))
	for i, d := range diags {
		c := *d
		c.Summary = rd.Redact(d.Summary)
		c.Detail = rd.Redact(d.Detail)
		out[i] = &c
	}
	return out
}
