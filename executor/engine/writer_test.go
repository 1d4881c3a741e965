package engine

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestEngineWritesNoRecords holds "only the executor writes records": no
// file of the engine (tests aside) calls a write method of the state
// store (Update, Put, Delete, Tx) or names its transaction type; the
// engine hands the store to the executor, which writes.
func TestEngineWritesNoRecords(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := filepath.Glob("*/*.go")
	files = append(files, sub...)
	fset := token.NewFileSet()
	scanned := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") || strings.Contains(name, "testdata") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		scanned++
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "state" && sel.Sel.Name == "Tx" {
				t.Errorf("%s: the engine names state.Tx: only the executor writes records", fset.Position(sel.Pos()))
			}
			switch sel.Sel.Name {
			case "Update", "Put", "Delete", "Migrate":
				if strings.Contains(exprString(sel.X), "Store") || strings.Contains(exprString(sel.X), "tx") {
					t.Errorf("%s: the engine calls %s.%s: only the executor writes records (executor.MarkFailed, a plan)",
						fset.Position(sel.Pos()), exprString(sel.X), sel.Sel.Name)
				}
			}
			return true
		})
	}
	if scanned < 10 {
		t.Fatalf("scanned %d files: the test does not see the engine's sources", scanned)
	}
}

func exprString(x ast.Expr) string {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	}
	return ""
}
