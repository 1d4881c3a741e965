package spec

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/gocty"
)

// Kind is the kind of a resource block. It is a closed vocabulary.
type Kind uint8

const (
	KindInvalid Kind = iota
	KindDaemon       // daemon "name" {}: a long-running process or container
	KindJob          // job "name" {}: runs to completion
	KindModule       // module "name" {}: a plugin hosted by orch
	KindRuntime      // runtime "kind" "name" {}: a backend
)

var kindNames = [...]string{"invalid", "daemon", "job", "module", "runtime"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind returns the Kind named s, or KindInvalid.
func ParseKind(s string) Kind {
	for i, n := range kindNames {
		if i > 0 && n == s {
			return Kind(i)
		}
	}
	return KindInvalid
}

// KeyType says whether an instance key is absent, an integer (count) or a
// string (for_each).
type KeyType uint8

const (
	NoKeyType KeyType = iota
	IntKeyType
	StringKeyType
)

// Key identifies one instance of a block expanded by count or for_each.
// The zero Key is "no key": a block without count or for_each.
type Key struct {
	Type KeyType
	Int  int
	Str  string
}

// NoKey is the key of a block that has neither count nor for_each.
var NoKey = Key{}

// IntKey is the key of instance i of a counted block.
func IntKey(i int) Key { return Key{Type: IntKeyType, Int: i} }

// StringKey is the key of a for_each instance.
func StringKey(s string) Key { return Key{Type: StringKeyType, Str: s} }

// String renders the key as it appears in an address: "", "[1]" or `["eu"]`.
func (k Key) String() string {
	switch k.Type {
	case IntKeyType:
		return "[" + strconv.Itoa(k.Int) + "]"
	case StringKeyType:
		return "[" + hclQuote(k.Str) + "]"
	}
	return ""
}

// Less orders keys: no key, then integer keys numerically, then string keys.
func (k Key) Less(o Key) bool {
	if k.Type != o.Type {
		return k.Type < o.Type
	}
	if k.Type == IntKeyType {
		return k.Int < o.Int
	}
	return k.Str < o.Str
}

// Address names a block or one of its instances: daemon.api, daemon.api[1],
// job.migrate, module.compress, runtime.docker.local. Addresses are values:
// comparable, usable as map keys, rendered by String and read by
// ParseAddress.
type Address struct {
	Kind Kind
	Type string // the runtime kind (process, docker, ...); only for KindRuntime
	Name string
	Key  Key
}

// String renders the address in the syntax a user writes.
func (a Address) String() string {
	var b strings.Builder
	b.WriteString(a.Kind.String())
	b.WriteByte('.')
	if a.Kind == KindRuntime {
		b.WriteString(a.Type)
		b.WriteByte('.')
	}
	b.WriteString(a.Name)
	b.WriteString(a.Key.String())
	return b.String()
}

// Block returns the address of the block this instance belongs to (its key
// removed).
func (a Address) Block() Address { a.Key = NoKey; return a }

// Instance returns the address of instance k of this block.
func (a Address) Instance(k Key) Address { a.Key = k; return a }

// IsZero reports whether a is the zero Address.
func (a Address) IsZero() bool { return a.Kind == KindInvalid }

// Less orders addresses by kind, runtime type, name, then key.
func (a Address) Less(b Address) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Type != b.Type {
		return a.Type < b.Type
	}
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Key.Less(b.Key)
}

// ParseAddress reads an address such as `daemon.api[1]`, `daemon.api["eu"]`
// or `runtime.docker.local`.
func ParseAddress(s string) (Address, error) {
	if a, ok := parseAddressFast(s); ok {
		return a, nil
	}
	trav, diags := hclsyntax.ParseTraversalAbs([]byte(s), "address", hcl.InitialPos)
	if diags.HasErrors() {
		return Address{}, fmt.Errorf("invalid address %q: %s", s, diags[0].Detail)
	}
	a, rest, err := addressFromTraversal(trav)
	if err != nil {
		return Address{}, fmt.Errorf("invalid address %q: %w", s, err)
	}
	if len(rest) > 0 {
		return Address{}, fmt.Errorf("invalid address %q: unexpected %q after the address", s, s[rest[0].SourceRange().Start.Byte:])
	}
	return a, nil
}

// addressFromTraversal reads the address at the head of a traversal and
// returns what remains (attribute accesses after it). An index right after
// a resource name is taken as the instance key.
func addressFromTraversal(t hcl.Traversal) (Address, hcl.Traversal, error) {
	if len(t) == 0 {
		return Address{}, nil, fmt.Errorf("empty address")
	}
	root := t.RootName()
	k := ParseKind(root)
	if k == KindInvalid {
		return Address{}, nil, fmt.Errorf("%q is not a resource kind (daemon, job, module or runtime)", root)
	}
	a := Address{Kind: k}
	i := 1
	next := func(what string) (string, error) {
		if i >= len(t) {
			return "", fmt.Errorf("%s needs a %s", root, what)
		}
		attr, ok := t[i].(hcl.TraverseAttr)
		if !ok {
			return "", fmt.Errorf("expected a %s after %q", what, root)
		}
		i++
		return attr.Name, nil
	}
	var err error
	if k == KindRuntime {
		if a.Type, err = next("runtime kind"); err != nil {
			return Address{}, nil, err
		}
	}
	if a.Name, err = next("name"); err != nil {
		return Address{}, nil, err
	}
	if i < len(t) {
		if idx, ok := t[i].(hcl.TraverseIndex); ok {
			key, err := keyFromValue(idx.Key)
			if err != nil {
				return Address{}, nil, err
			}
			a.Key = key
			i++
		}
	}
	return a, t[i:], nil
}

// keyFromValue turns an index value into an instance key.
func keyFromValue(v cty.Value) (Key, error) {
	if v.IsNull() || !v.IsKnown() {
		return NoKey, fmt.Errorf("an instance key must be a known number or string")
	}
	switch v.Type() {
	case cty.Number:
		var i int
		if err := gocty.FromCtyValue(v, &i); err != nil || i < 0 {
			return NoKey, fmt.Errorf("an instance index must be a whole number, zero or more")
		}
		return IntKey(i), nil
	case cty.String:
		return StringKey(v.AsString()), nil
	}
	return NoKey, fmt.Errorf("an instance key must be a number or a string")
}

// parseAddressFast reads the common forms (runtime.process.host, daemon.db,
// daemon.api[3]) without the HCL parser,
// accepting them only when they render back to the same text; anything
// else goes through HCL. State and snapshot decoding read thousands.
func parseAddressFast(s string) (Address, bool) {
	var a Address
	i := 0
	word := func() string {
		j := i
		for j < len(s) {
			c := s[j]
			if c == '_' || c == '-' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' {
				j++
				continue
			}
			break
		}
		w := s[i:j]
		i = j
		return w
	}
	dot := func() bool {
		if i < len(s) && s[i] == '.' {
			i++
			return true
		}
		return false
	}
	ok := func() (Address, bool) {
		return a, a.String() == s
	}
	if a.Kind = ParseKind(word()); a.Kind == KindInvalid || !dot() {
		return Address{}, false
	}
	if a.Kind == KindRuntime {
		if a.Type = word(); a.Type == "" || !dot() {
			return Address{}, false
		}
	}
	if a.Name = word(); a.Name == "" {
		return Address{}, false
	}
	if i < len(s) {
		if s[i] != '[' || s[len(s)-1] != ']' {
			return Address{}, false
		}
		n, err := strconv.Atoi(s[i+1 : len(s)-1])
		if err != nil || n < 0 {
			return Address{}, false
		}
		a.Key = IntKey(n)
	}
	for _, w := range []string{a.Name, a.Type} {
		if w != "" && ('0' <= w[0] && w[0] <= '9' || w[0] == '-') {
			return Address{}, false
		}
	}
	return ok()
}

// hclQuote quotes s as an HCL string literal: HCL knows the escapes \n,
// \r, \t, \", \\ and \uNNNN (not Go's \xNN), and "${" and "%{" start
// templates, so they are escaped as "$${" and "%%{".
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteRune(r)
			b.WriteRune(r)
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\xef\xbf\xbd"): // invalid UTF-8
			b.WriteString(`\ufffd`)
		case r < 0x20 || r == 0x7f || !unicode.IsPrint(r) && r > 0x7f:
			if r > 0xffff {
				fmt.Fprintf(&b, `\U%08x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
