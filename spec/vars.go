package spec

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

const sensitiveMark = "sensitive"

type validation struct {
	condition hcl.Expression
	message   hcl.Expression
}

func (l *loader) declareVariable(b *hcl.Block) {
	name := b.Labels[0]
	if !validName(name) {
		l.errorf(rangePtr(b.LabelRanges[0]), "Invalid variable name",
			"%q is not a valid variable name: use letters, digits, '-' and '_', starting with a letter.", name)
		return
	}
	if prev, ok := l.vars[name]; ok {
		l.errorf(rangePtr(b.DefRange), "Duplicate variable \""+name+"\"",
			"Variable %q is already declared at %s; names must be unique.", name, prev.DeclRange)
		return
	}
	v := &Variable{Name: name, Type: cty.DynamicPseudoType, Nullable: true, DeclRange: b.DefRange}
	content, diags := b.Body.Content(variableSchema)
	l.diags = append(l.diags, diags...)
	if content == nil {
		return
	}
	var defaults *typeexpr.Defaults
	if a := content.Attributes["type"]; a != nil {
		ty, def, d := typeexpr.TypeConstraintWithDefaults(a.Expr)
		if d.HasErrors() {
			l.diags = append(l.diags, d...)
			return
		}
		v.Type, defaults = ty, def
	}
	for _, flag := range []struct {
		name string
		dst  *bool
	}{{"sensitive", &v.Sensitive}, {"nullable", &v.Nullable}} {
		if a := content.Attributes[flag.name]; a != nil {
			val, d := a.Expr.Value(nil)
			l.diags = append(l.diags, d...)
			if b, ok := l.toBool(val, a.Expr.Range(), flag.name); ok {
				*flag.dst = b
			}
		}
	}
	if a := content.Attributes["description"]; a != nil {
		val, d := a.Expr.Value(nil)
		l.diags = append(l.diags, d...)
		if s, ok := l.toString(val, a.Expr.Range(), "description"); ok {
			v.Description = s
		}
	}
	if a := content.Attributes["default"]; a != nil {
		val, d := a.Expr.Value(nil)
		l.diags = append(l.diags, d...)
		if !d.HasErrors() {
			if defaults != nil {
				val = defaults.Apply(val)
			}
			conv, err := convert.Convert(val, v.Type)
			if err != nil {
				l.errorf(rangePtr(a.Expr.Range()), "Invalid default value for variable",
					"The default of variable %q does not match its type %s: %s.", name, typeexpr.TypeString(v.Type), describeConvError(err, v.Type))
				l.broken["var."+name] = true
			} else {
				v.Default = conv
			}
		}
	}
	for _, vb := range content.Blocks {
		c, d := vb.Body.Content(validationSchema)
		l.diags = append(l.diags, d...)
		if c == nil || d.HasErrors() {
			continue
		}
		cond := c.Attributes["condition"].Expr
		ok := false
		for _, t := range cond.Variables() {
			if t.RootName() == "var" && len(t) > 1 {
				if a, isAttr := t[1].(hcl.TraverseAttr); isAttr && a.Name == name {
					ok = true
				} else {
					l.errorf(rangePtr(t.SourceRange()), "Invalid reference in variable validation",
						"The condition of variable %q may only refer to var.%s.", name, name)
				}
			}
		}
		if !ok {
			l.errorf(rangePtr(cond.Range()), "Invalid variable validation condition",
				"The condition must refer to var.%s, the value being validated.", name)
			continue
		}
		l.validations[name] = append(l.validations[name], validation{cond, c.Attributes["error_message"].Expr})
	}
	l.vars[name] = v
	l.defaults[name] = defaults
}

// rawValue is a value for a variable from outside the configuration.
type rawValue struct {
	source string
	text   string         // -var and ORCH_VAR_: raw text
	expr   hcl.Expression // -var-file: an expression
}

// resolveVariables gives every variable its value: default < ORCH_VAR_ <
// -var-file (in order) < -var (in order). It validates the values.
func (l *loader) resolveVariables() {
	raw := map[string]rawValue{}
	for _, kv := range l.opts.Environ {
		k, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, "ORCH_VAR_") {
			continue
		}
		name := strings.TrimPrefix(k, "ORCH_VAR_")
		if _, declared := l.vars[name]; declared {
			raw[name] = rawValue{source: k, text: val}
		}
	}
	for _, vf := range l.opts.VarFiles {
		var f *hcl.File
		var d hcl.Diagnostics
		if lim := CheckSource(vf.Src, vf.Name); lim != nil {
			l.diags = append(l.diags, lim)
			if _, shown := l.cfg.Files[vf.Name]; !shown {
				l.cfg.Files[vf.Name] = refusedFile(vf.Src, lim)
			}
			continue
		}
		if strings.HasSuffix(vf.Name, ".json") {
			f, d = json.Parse(vf.Src, vf.Name)
		} else {
			f, d = hclsyntax.ParseConfig(vf.Src, vf.Name, hcl.InitialPos)
		}
		l.diags = append(l.diags, d...)
		if f == nil || d.HasErrors() {
			continue
		}
		l.cfg.Files[vf.Name] = f
		attrs, d := f.Body.JustAttributes()
		l.diags = append(l.diags, d...)
		for _, name := range keysOf(attrs) {
			a := attrs[name]
			if _, ok := l.vars[name]; !ok {
				l.errorf(rangePtr(a.NameRange), "Value for undeclared variable", "%s",
					withSuggestion(fmt.Sprintf("The file %s sets %q, which the configuration does not declare.", vf.Name, name), name, keysOf(l.vars)))
				continue
			}
			raw[name] = rawValue{source: "-var-file " + vf.Name, expr: a.Expr}
		}
	}
	for _, kv := range l.opts.Vars {
		name, val, ok := strings.Cut(kv, "=")
		if !ok {
			l.errorf(nil, "Invalid -var option", "The option -var %q is not of the form NAME=VALUE.", kv)
			continue
		}
		name = strings.TrimSpace(name)
		if _, declared := l.vars[name]; !declared {
			l.errorf(nil, "Value for undeclared variable", "%s",
				withSuggestion(fmt.Sprintf("-var sets %q, which the configuration does not declare.", name), name, keysOf(l.vars)))
			continue
		}
		raw[name] = rawValue{source: "-var", text: val}
	}
	for _, name := range keysOf(l.vars) {
		v := l.vars[name]
		if l.broken["var."+name] && raw[name].source == "" {
			continue // its default was refused; no value to report missing
		}
		val, source, ok := l.variableValue(v, raw[name])
		if !ok {
			continue
		}
		v.Value, v.Source = val, source
		if v.Sensitive {
			l.noteSecret(val)
		}
		if l.validateVariable(v) {
			l.cfg.Variables[name] = v
			if v.Sensitive {
				val = val.Mark(sensitiveMark)
			}
			l.varVals[name] = val
		}
	}
}

func (l *loader) variableValue(v *Variable, rv rawValue) (cty.Value, string, bool) {
	var val cty.Value
	switch {
	case rv.expr != nil:
		x, d := rv.expr.Value(nil)
		l.diags = append(l.diags, d...)
		if d.HasErrors() {
			return cty.NilVal, "", false
		}
		val = x
	case rv.source != "":
		if v.Type == cty.String || v.Type == cty.DynamicPseudoType && !looksLikeHCLValue(rv.text) {
			val = cty.StringVal(rv.text)
			break
		}
		shown := strconv.Quote(rv.text)
		if v.Sensitive {
			shown = "(sensitive value)"
		}
		if at := checkExpressionSource([]byte(rv.text)); at >= 0 {
			l.errorf(rangePtr(v.DeclRange), "Value for variable nested too deeply",
				"The value for variable %q from %s passes %d levels of nesting (at byte %d), the most orch accepts; orch refuses it before parsing.",
				v.Name, rv.source, MaxNestingDepth, at)
			return cty.NilVal, "", false
		}
		expr, d := hclsyntax.ParseExpression([]byte(rv.text), rv.source, hcl.InitialPos)
		if d.HasErrors() {
			l.errorf(rangePtr(v.DeclRange), "Invalid value for variable",
				"The value %s for variable %q from %s is not a valid %s. Write it as an HCL literal, such as %s.",
				shown, v.Name, rv.source, typeexpr.TypeString(v.Type), literalExample(v.Type))
			return cty.NilVal, "", false
		}
		x, d := expr.Value(nil)
		if d.HasErrors() {
			l.errorf(rangePtr(v.DeclRange), "Invalid value for variable",
				"The value %s for variable %q from %s is not a valid %s. Write it as an HCL literal, such as %s; references and function calls are not allowed.",
				shown, v.Name, rv.source, typeexpr.TypeString(v.Type), literalExample(v.Type))
			return cty.NilVal, "", false
		}
		val = x
	case v.Default != cty.NilVal:
		return v.Default, "default", true
	default:
		l.errorf(rangePtr(v.DeclRange), "No value for required variable",
			"Variable %q has no default and was not set. Set it with -var %s=VALUE, in a -var-file, or with the environment variable ORCH_VAR_%s.", v.Name, v.Name, v.Name)
		return cty.NilVal, "", false
	}
	if d := l.defaults[v.Name]; d != nil {
		val = d.Apply(val)
	}
	// A value from a -var-file is reported where that file sets it (at the
	// element at fault); one from -var or the environment at the variable.
	at := v.DeclRange
	if rv.expr != nil {
		at = rv.expr.Range()
	}
	conv, err := convert.Convert(val, v.Type)
	if err != nil {
		err = elemError(val, v.Type, err)
		if pe, ok := err.(cty.PathError); ok && rv.expr != nil {
			at = elemRange(rv.expr, pe.Path)
		}
		l.errorf(rangePtr(at), "Invalid value for variable",
			"The value for variable %q from %s is not a %s: %s.", v.Name, rv.source, typeexpr.TypeString(v.Type), describeConvError(err, v.Type))
		return cty.NilVal, "", false
	}
	if conv.IsNull() && !v.Nullable {
		l.errorf(rangePtr(at), "Null value for non-nullable variable",
			"Variable %q is not nullable, but %s sets it to null.", v.Name, rv.source)
		return cty.NilVal, "", false
	}
	return conv, rv.source, true
}

// looksLikeHCLValue guesses whether untyped -var text is meant as a
// structured value (a list, an object, a number or a bool).
func looksLikeHCLValue(s string) bool {
	t := strings.TrimSpace(s)
	return strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{")
}

func (l *loader) validateVariable(v *Variable) bool {
	ok := true
	for _, vd := range l.validations[v.Name] {
		val := v.Value
		if v.Sensitive {
			val = val.Mark(sensitiveMark)
		}
		ctx := &hcl.EvalContext{
			Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.Name: val})},
			Functions: l.funcs,
		}
		res, d := vd.condition.Value(ctx)
		if d.HasErrors() {
			l.diags = append(l.diags, d...)
			ok = false
			continue
		}
		res, _ = res.Unmark()
		if res.IsNull() || !res.IsKnown() || res.Type() != cty.Bool {
			l.errorf(rangePtr(vd.condition.Range()), "Invalid validation condition",
				"The condition of variable %q must produce true or false.", v.Name)
			ok = false
			continue
		}
		if res.True() {
			continue
		}
		msg, d := vd.message.Value(ctx)
		text := "The value is not valid."
		if !d.HasErrors() {
			if m, _ := msg.Unmark(); m.Type() == cty.String && !m.IsNull() && m.IsKnown() && !msg.IsMarked() {
				text = m.AsString()
			}
		}
		l.errorf(rangePtr(vd.condition.Range()), "Invalid value for variable",
			"%s\n\nThis was checked by the validation rule of variable %q; the value came from %s.", text, v.Name, v.Source)
		ok = false
	}
	return ok
}

// varObject is the value of `var`; it must be called only once the
// variables are resolved (it is built once).
func (l *loader) varObject() cty.Value {
	if l.varObj == cty.NilVal {
		if len(l.varVals) == 0 {
			l.varObj = cty.EmptyObjectVal
		} else {
			l.varObj = cty.ObjectVal(l.varVals)
		}
	}
	return l.varObj
}

func (l *loader) pathObject() cty.Value {
	if l.pathObj == cty.NilVal {
		l.pathObj = cty.ObjectVal(map[string]cty.Value{"root": cty.StringVal(l.cfg.Dir)})
	}
	return l.pathObj
}

// literalExample shows how a value of type ty is written on the command line.
func literalExample(ty cty.Type) string {
	switch {
	case ty == cty.Number:
		return "8080"
	case ty == cty.Bool:
		return "true"
	case ty.IsListType() || ty.IsSetType() || ty.IsTupleType():
		return `["a", "b"]`
	case ty.IsMapType() || ty.IsObjectType():
		return `{ key = "value" }`
	}
	return `"text"`
}
