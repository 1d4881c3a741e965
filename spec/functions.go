package spec

import (
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-cty-funcs/cidr"
	"github.com/hashicorp/go-cty-funcs/collection"
	"github.com/hashicorp/go-cty-funcs/crypto"
	"github.com/hashicorp/go-cty-funcs/encoding"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/tryfunc"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// functions returns the function library of the language, Terraform's
// functions as far as they fit orch: go-cty's standard library, HashiCorp's
// go-cty-funcs (cidr, hashes, encodings, coalesce), HCL's try and can, and
// the few Terraform defines itself (length of a string, replace with a
// /regex/, startswith, sum, one, ...), written here as Terraform does.
// file() and the other file functions read through fsys, paths relative
// to dir. Functions whose result changes at every call (timestamp, uuid,
// bcrypt) are left out: every load would see a changed configuration.
func functions(fsys fs.FS, dir string) map[string]function.Function {
	fileFn := function.New(&function.Spec{
		Description: "Reads a file of the configuration directory as UTF-8 text.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := readConfigFile(fsys, dir, args[0].AsString())
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			if !utf8.Valid(b) {
				return cty.NilVal, function.NewArgErrorf(0, "%s is not UTF-8 text; use filebase64 for binary files", args[0].AsString())
			}
			return cty.StringVal(string(b)), nil
		},
	})
	fileBase64 := function.New(&function.Spec{
		Description: "Reads a file of the configuration directory, base64-encoded.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			b, err := readConfigFile(fsys, dir, args[0].AsString())
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			return cty.StringVal(base64.StdEncoding.EncodeToString(b)), nil
		},
	})
	fileExists := function.New(&function.Spec{
		Description: "Reports whether a file of the configuration directory exists.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			st, err := statConfigFile(fsys, dir, args[0].AsString())
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return cty.False, nil
				}
				return cty.NilVal, function.NewArgError(0, err)
			}
			if !st.Mode().IsRegular() {
				return cty.NilVal, function.NewArgErrorf(0, "%s is not a regular file", args[0].AsString())
			}
			return cty.True, nil
		},
	})
	abspath := function.New(&function.Spec{
		Description: "Makes a path absolute, relative to the configuration directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.StringVal(absPath(dir, args[0].AsString())), nil
		},
	})
	funcs := map[string]function.Function{
		"abs": stdlib.AbsoluteFunc, "abspath": abspath, "alltrue": allTrueFunc, "anytrue": anyTrueFunc,
		"base64decode": encoding.Base64DecodeFunc, "base64encode": encoding.Base64EncodeFunc,
		"base64sha256": makeBase64Hash(sha256.New), "base64sha512": makeBase64Hash(sha512.New),
		"basename": basenameFunc, "can": tryfunc.CanFunc, "ceil": stdlib.CeilFunc,
		"chomp": stdlib.ChompFunc, "chunklist": stdlib.ChunklistFunc,
		"cidrhost": cidr.HostFunc, "cidrnetmask": cidr.NetmaskFunc, "cidrsubnet": cidr.SubnetFunc,
		"cidrsubnets": cidr.SubnetsFunc, "coalesce": collection.CoalesceFunc,
		"coalescelist": stdlib.CoalesceListFunc, "compact": stdlib.CompactFunc, "concat": stdlib.ConcatFunc,
		"contains": stdlib.ContainsFunc, "csvdecode": stdlib.CSVDecodeFunc, "dirname": dirnameFunc,
		"distinct": stdlib.DistinctFunc, "element": stdlib.ElementFunc, "endswith": endsWithFunc,
		"file": fileFn, "filebase64": fileBase64, "fileexists": fileExists, "flatten": stdlib.FlattenFunc,
		"floor": stdlib.FloorFunc, "format": stdlib.FormatFunc, "formatdate": stdlib.FormatDateFunc,
		"formatlist": stdlib.FormatListFunc, "indent": stdlib.IndentFunc, "index": indexFunc,
		"join": stdlib.JoinFunc, "jsondecode": jsonDecodeFunc, "jsonencode": stdlib.JSONEncodeFunc,
		"keys": stdlib.KeysFunc, "length": lengthFunc, "log": stdlib.LogFunc, "lookup": stdlib.LookupFunc,
		"lower": stdlib.LowerFunc, "max": stdlib.MaxFunc, "md5": crypto.Md5Func, "merge": stdlib.MergeFunc,
		"min": stdlib.MinFunc, "one": oneFunc,
		"parseint": stdlib.ParseIntFunc, "pow": stdlib.PowFunc, "range": stdlib.RangeFunc,
		"regex": stdlib.RegexFunc, "regexall": stdlib.RegexAllFunc, "replace": replaceFunc,
		"reverse": stdlib.ReverseListFunc, "setintersection": stdlib.SetIntersectionFunc,
		"setproduct": stdlib.SetProductFunc, "setsubtract": stdlib.SetSubtractFunc,
		"setunion": stdlib.SetUnionFunc, "sha1": crypto.Sha1Func, "sha256": crypto.Sha256Func,
		"sha512": crypto.Sha512Func, "signum": stdlib.SignumFunc,
		"slice": stdlib.SliceFunc, "sort": stdlib.SortFunc, "split": stdlib.SplitFunc,
		"startswith": startsWithFunc, "strcontains": strContainsFunc, "strrev": stdlib.ReverseFunc,
		"substr": stdlib.SubstrFunc, "sum": sumFunc, "timeadd": stdlib.TimeAddFunc, "title": stdlib.TitleFunc,
		"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
		"tomap": stdlib.MakeToFunc(cty.Map(cty.DynamicPseudoType)), "tonumber": stdlib.MakeToFunc(cty.Number),
		"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)), "tostring": stdlib.MakeToFunc(cty.String),
		"trim": stdlib.TrimFunc, "trimprefix": stdlib.TrimPrefixFunc, "trimspace": stdlib.TrimSpaceFunc,
		"trimsuffix": stdlib.TrimSuffixFunc, "try": tryfunc.TryFunc, "upper": stdlib.UpperFunc,
		"urlencode": encoding.URLEncodeFunc, "values": stdlib.ValuesFunc, "zipmap": stdlib.ZipmapFunc,
	}
	// A template may call every function but templatefile itself.
	inner := make(map[string]function.Function, len(funcs))
	for name, f := range funcs {
		inner[name] = f
	}
	inner["templatefile"] = function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}, {Name: "vars", Type: cty.DynamicPseudoType}},
		Type:   function.StaticReturnType(cty.DynamicPseudoType),
		Impl: func([]cty.Value, cty.Type) (cty.Value, error) {
			return cty.NilVal, errors.New("cannot call templatefile from inside a templatefile call")
		},
	})
	funcs["templatefile"] = makeTemplateFile(fsys, dir, inner)
	return funcs
}

// makeTemplateFile is Terraform's templatefile(path, vars): the file (of
// the configuration directory) rendered as a template whose only variables
// are vars.
func makeTemplateFile(fsys fs.FS, dir string, funcs map[string]function.Function) function.Function {
	return function.New(&function.Spec{
		Description: "Renders a file of the configuration directory as a template with the given variables.",
		Params: []function.Parameter{
			{Name: "path", Type: cty.String},
			{Name: "vars", Type: cty.DynamicPseudoType},
		},
		Type: function.StaticReturnType(cty.DynamicPseudoType),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			vars := args[1]
			if vars.IsNull() || !(vars.Type().IsObjectType() || vars.Type().IsMapType()) {
				return cty.NilVal, function.NewArgErrorf(1, "vars must be an object or a map, as in { port = 80 }")
			}
			src, err := readConfigFile(fsys, dir, name)
			if err != nil {
				return cty.NilVal, function.NewArgError(0, err)
			}
			if d := checkTemplateSource(src, name); d != nil {
				return cty.NilVal, function.NewArgErrorf(0, "%s: %s: %s", d.Subject, d.Summary, d.Detail)
			}
			expr, diags := hclsyntax.ParseTemplate(src, name, hcl.InitialPos)
			if diags.HasErrors() {
				return cty.NilVal, function.NewArgError(0, diagsError(diags))
			}
			ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}, Functions: funcs}
			for it := vars.ElementIterator(); it.Next(); {
				k, v := it.Element()
				key := k.AsString()
				if !hclsyntax.ValidIdentifier(key) {
					return cty.NilVal, function.NewArgErrorf(1, "invalid template variable name %q: must start with a letter, followed by zero or more letters, digits, and underscores", key)
				}
				ctx.Variables[key] = v
			}
			for _, tr := range expr.Variables() {
				if _, ok := ctx.Variables[tr.RootName()]; !ok {
					return cty.NilVal, function.NewArgErrorf(1, "vars map does not contain key %q, referenced at %s", tr.RootName(), tr.SourceRange())
				}
			}
			val, diags := expr.Value(ctx)
			if diags.HasErrors() {
				return cty.NilVal, diagsError(diags)
			}
			return val, nil
		},
	})
}

// diagsError is the first error of diags, with its place.
func diagsError(diags hcl.Diagnostics) error {
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			if d.Subject != nil {
				return fmt.Errorf("%s: %s; %s", d.Subject, d.Summary, d.Detail)
			}
			return fmt.Errorf("%s; %s", d.Summary, d.Detail)
		}
	}
	return diags
}

// lengthFunc is Terraform's length: the number of elements of a collection
// or structure, or of characters (grapheme clusters) of a string.
var lengthFunc = function.New(&function.Spec{
	Description: "The number of elements of a list, set, map, tuple or object, or of characters of a string.",
	Params: []function.Parameter{{
		Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true, AllowUnknown: true,
	}},
	Type: func(args []cty.Value) (cty.Type, error) {
		ty := args[0].Type()
		switch {
		case ty == cty.String, ty.IsTupleType(), ty.IsObjectType(), ty.IsListType(), ty.IsMapType(), ty.IsSetType(), ty == cty.DynamicPseudoType:
			return cty.Number, nil
		}
		return cty.Number, errors.New("argument must be a string, a collection type, or a structural type")
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		ty := v.Type()
		switch {
		case ty == cty.DynamicPseudoType:
			return cty.UnknownVal(cty.Number), nil
		case ty.IsTupleType():
			return cty.NumberIntVal(int64(len(ty.TupleElementTypes()))), nil
		case ty.IsObjectType():
			return cty.NumberIntVal(int64(len(ty.AttributeTypes()))), nil
		case ty == cty.String:
			return stdlib.Strlen(v)
		}
		return v.Length(), nil
	},
})

// jsonDecodeFunc is go-cty's jsondecode, refusing JSON nested deeper than
// MaxNestingDepth: its decoder recurses once per level, and a deep enough
// document (a file read with file(), a string) overflows the Go stack.
var jsonDecodeFunc = function.New(&function.Spec{
	Description: stdlib.JSONDecodeFunc.Description(),
	Params:      []function.Parameter{{Name: "str", Type: cty.String, AllowUnknown: true}},
	Type: func(args []cty.Value) (cty.Type, error) {
		if v := args[0]; v.IsKnown() && !v.IsNull() {
			if at := jsonDepthPassed(v.AsString(), MaxNestingDepth); at >= 0 {
				return cty.NilType, function.NewArgErrorf(0, "the JSON nests deeper than %d levels (at byte %d), the most orch accepts", MaxNestingDepth, at)
			}
		}
		return stdlib.JSONDecodeFunc.ReturnTypeForValues(args)
	},
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return stdlib.JSONDecodeFunc.Call(args)
	},
})

// jsonDepthPassed returns the byte offset of the array or object that
// passes limit levels of nesting in the JSON text s, or -1.
func jsonDepthPassed(s string, limit int) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[', '{':
			if depth++; depth > limit {
				return i
			}
		case ']', '}':
			depth--
		case '"':
			for i++; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
				}
			}
		}
	}
	return -1
}

// indexFunc is Terraform's index(list, value): the index of value in a
// list or tuple (go-cty's stdlib index is another function, collection[key]).
var indexFunc = function.New(&function.Spec{
	Description: "The index of the first element of a list or tuple equal to a value.",
	Params: []function.Parameter{
		{Name: "list", Type: cty.DynamicPseudoType}, {Name: "value", Type: cty.DynamicPseudoType},
	},
	Type: function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		list := args[0]
		if !list.Type().IsListType() && !list.Type().IsTupleType() {
			return cty.NilVal, function.NewArgErrorf(0, "argument must be a list or tuple")
		}
		if !list.IsKnown() {
			return cty.UnknownVal(cty.Number), nil
		}
		if list.LengthInt() == 0 {
			return cty.NilVal, function.NewArgErrorf(0, "cannot search an empty list")
		}
		for it := list.ElementIterator(); it.Next(); {
			i, v := it.Element()
			eq, err := stdlib.Equal(v, args[1])
			if err != nil {
				return cty.NilVal, err
			}
			if !eq.IsKnown() {
				return cty.UnknownVal(cty.Number), nil
			}
			if eq.True() {
				return i, nil
			}
		}
		return cty.NilVal, function.NewArgErrorf(1, "item not found")
	},
})

// replaceFunc is Terraform's replace: a substring wrapped in slashes is a
// regular expression.
var replaceFunc = function.New(&function.Spec{
	Description: "Replaces every occurrence of a substring (a regular expression when written /like this/).",
	Params: []function.Parameter{
		{Name: "str", Type: cty.String}, {Name: "substr", Type: cty.String}, {Name: "replace", Type: cty.String},
	},
	Type: function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		str, substr, repl := args[0].AsString(), args[1].AsString(), args[2].AsString()
		if len(substr) > 1 && substr[0] == '/' && substr[len(substr)-1] == '/' {
			re, err := regexp.Compile(substr[1 : len(substr)-1])
			if err != nil {
				return cty.NilVal, function.NewArgError(1, err)
			}
			return cty.StringVal(re.ReplaceAllString(str, repl)), nil
		}
		return cty.StringVal(strings.ReplaceAll(str, substr, repl)), nil
	},
})

func makeStringTest(desc, second string, test func(s, t string) bool) function.Function {
	return function.New(&function.Spec{
		Description: desc,
		Params:      []function.Parameter{{Name: "str", Type: cty.String}, {Name: second, Type: cty.String}},
		Type:        function.StaticReturnType(cty.Bool),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			return cty.BoolVal(test(args[0].AsString(), args[1].AsString())), nil
		},
	})
}

var (
	startsWithFunc  = makeStringTest("Reports whether a string starts with a prefix.", "prefix", strings.HasPrefix)
	endsWithFunc    = makeStringTest("Reports whether a string ends with a suffix.", "suffix", strings.HasSuffix)
	strContainsFunc = makeStringTest("Reports whether a string contains a substring.", "substr", strings.Contains)
)

// allTrueFunc and anyTrueFunc are Terraform's alltrue and anytrue.
var allTrueFunc = function.New(&function.Spec{
	Description: "Reports whether every element of a list of bools is true (true for an empty list).",
	Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			if !v.IsKnown() {
				return cty.UnknownVal(cty.Bool), nil
			}
			if v.IsNull() || v.False() {
				return cty.False, nil
			}
		}
		return cty.True, nil
	},
})

var anyTrueFunc = function.New(&function.Spec{
	Description: "Reports whether any element of a list of bools is true (false for an empty list).",
	Params:      []function.Parameter{{Name: "list", Type: cty.List(cty.Bool)}},
	Type:        function.StaticReturnType(cty.Bool),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		unknown := false
		for it := args[0].ElementIterator(); it.Next(); {
			_, v := it.Element()
			switch {
			case !v.IsKnown():
				unknown = true
			case v.IsNull():
			case v.True():
				return cty.True, nil
			}
		}
		if unknown {
			return cty.UnknownVal(cty.Bool), nil
		}
		return cty.False, nil
	},
})

// sumFunc is Terraform's sum: the total of a non-empty list, set or tuple
// of numbers.
var sumFunc = function.New(&function.Spec{
	Description: "The sum of a list, set or tuple of numbers.",
	Params:      []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
	Type:        function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		ty := v.Type()
		if !ty.IsListType() && !ty.IsSetType() && !ty.IsTupleType() {
			return cty.NilVal, function.NewArgErrorf(0, "argument must be a list, set, or tuple; received %s", ty.FriendlyName())
		}
		if !v.IsWhollyKnown() {
			return cty.UnknownVal(cty.Number), nil
		}
		if v.LengthInt() == 0 {
			return cty.NilVal, function.NewArgErrorf(0, "cannot sum an empty list")
		}
		total := cty.Zero
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			n, err := convert.Convert(e, cty.Number)
			if err != nil || n.IsNull() {
				return cty.NilVal, function.NewArgErrorf(0, "argument must be list, set, or tuple of number values")
			}
			total = total.Add(n)
		}
		return total, nil
	},
})

// oneFunc is Terraform's one: the only element of a list, set or tuple of
// at most one element, or null when it is empty.
var oneFunc = function.New(&function.Spec{
	Description: "The only element of a list, set or tuple of at most one element; null if it is empty.",
	Params:      []function.Parameter{{Name: "list", Type: cty.DynamicPseudoType}},
	Type: func(args []cty.Value) (cty.Type, error) {
		ty := args[0].Type()
		switch {
		case ty.IsListType() || ty.IsSetType():
			return ty.ElementType(), nil
		case ty.IsTupleType():
			ets := ty.TupleElementTypes()
			switch len(ets) {
			case 0:
				return cty.DynamicPseudoType, nil
			case 1:
				return ets[0], nil
			}
			return cty.NilType, function.NewArgErrorf(0, "must be a list, set, or tuple value with either zero or one elements")
		}
		return cty.NilType, function.NewArgErrorf(0, "must be a list, set, or tuple value with either zero or one elements")
	},
	Impl: func(args []cty.Value, ret cty.Type) (cty.Value, error) {
		v := args[0]
		switch v.LengthInt() {
		case 0:
			return cty.NullVal(ret), nil
		case 1:
			it := v.ElementIterator()
			it.Next()
			_, e := it.Element()
			return e, nil
		}
		return cty.NilVal, function.NewArgErrorf(0, "must be a list, set, or tuple value with either zero or one elements")
	},
})

var basenameFunc = function.New(&function.Spec{
	Description: "The last element of a path.",
	Params:      []function.Parameter{{Name: "path", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(filepath.Base(args[0].AsString())), nil
	},
})

var dirnameFunc = function.New(&function.Spec{
	Description: "A path without its last element.",
	Params:      []function.Parameter{{Name: "path", Type: cty.String}},
	Type:        function.StaticReturnType(cty.String),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		return cty.StringVal(filepath.Dir(args[0].AsString())), nil
	},
})

// makeBase64Hash is Terraform's base64sha256 and base64sha512: the hash of
// the string's UTF-8 bytes, base64-encoded (not its hex digits).
func makeBase64Hash(h func() hash.Hash) function.Function {
	return function.New(&function.Spec{
		Description: "The hash of a string, base64-encoded.",
		Params:      []function.Parameter{{Name: "str", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			d := h()
			d.Write([]byte(args[0].AsString()))
			return cty.StringVal(base64.StdEncoding.EncodeToString(d.Sum(nil))), nil
		},
	})
}

// absPath resolves p against the configuration directory.
func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

// fsPath maps a path written in the configuration to a path inside fsys, or
// "" when it lies outside the configuration directory.
func fsPath(dir, p string) string {
	abs := absPath(dir, p)
	rel, err := filepath.Rel(dir, abs)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return ""
	}
	return path.Clean(filepath.ToSlash(rel))
}

// readConfigFile reads the regular file p (relative to dir), at most
// maxFileSize bytes of it.
func readConfigFile(fsys fs.FS, dir, p string) ([]byte, error) {
	fp := fsPath(dir, p)
	if fp == "" {
		return osReadFile(absPath(dir, p))
	}
	f, err := fsys.Open(fp)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", absPath(dir, p))
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err == nil && len(b) > maxFileSize {
		return nil, fmt.Errorf("%s is larger than 16 MiB", absPath(dir, p))
	}
	return b, err
}

func statConfigFile(fsys fs.FS, dir, p string) (fs.FileInfo, error) {
	if fp := fsPath(dir, p); fp != "" {
		return fs.Stat(fsys, fp)
	}
	return osStat(absPath(dir, p))
}

func openConfigFile(fsys fs.FS, dir, p string) (fs.File, error) {
	if fp := fsPath(dir, p); fp != "" {
		return fsys.Open(fp)
	}
	return osOpen(absPath(dir, p))
}
