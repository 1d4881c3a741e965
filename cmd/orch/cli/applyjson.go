package cli

import (
	"encoding/json"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/orch-dev/orch/executor"
	"github.com/orch-dev/orch/planner"
)

// JSONApplyLine is one line of `orch apply -json` and `orch destroy
// -json`: a stream of JSON objects, one per line, told apart by Type:
//
//	plan        Plan: the plan about to be applied (docs/plan-json.md)
//	step        Address, Action, Phase (start, done, failed), Elapsed
//	            (seconds, at done and failed), Pid (at done, when known)
//	skipped     Address, Reason: a change that did not run
//	diagnostic  Diagnostic: an error or warning, as in validate -json
//	event       Event: an event of the agent applying (as events -json)
//	summary     OK, Add, Change, Replace, Destroy: the last line
type JSONApplyLine struct {
	Type       string            `json:"type"`
	Plan       *planner.JSONPlan `json:"plan,omitempty"`
	Address    string            `json:"address,omitempty"`
	Action     string            `json:"action,omitempty"`
	Phase      string            `json:"phase,omitempty"`
	Elapsed    *float64          `json:"elapsed_seconds,omitempty"`
	Pid        int               `json:"pid,omitempty"`
	Reason     string            `json:"reason,omitempty"`
	Diagnostic *JSONDiagnostic   `json:"diagnostic,omitempty"`
	Event      json.RawMessage   `json:"event,omitempty"`
	OK         *bool             `json:"ok,omitempty"`
	Add        *int              `json:"add,omitempty"`
	Change     *int              `json:"change,omitempty"`
	Replace    *int              `json:"replace,omitempty"`
	Destroy    *int              `json:"destroy,omitempty"`
}

// emit writes one line of the -json stream of apply and destroy.
func (a *App) emit(l JSONApplyLine) {
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	fmt.Fprintf(a.Stdout, "%s\n", b)
}

func (a *App) emitPlan(p *planner.Plan) {
	a.emit(JSONApplyLine{Type: "plan", Plan: planner.ToJSON(p)})
}

func (a *App) emitDiags(diags hcl.Diagnostics, files map[string]*hcl.File) {
	for _, d := range newJSONDiagnostics(diags, files).Diagnostics {
		a.emit(JSONApplyLine{Type: "diagnostic", Diagnostic: &d})
	}
}

func (a *App) emitSummary(ok bool, add, change, replace, destroy int) {
	a.emit(JSONApplyLine{Type: "summary", OK: &ok, Add: &add, Change: &change, Replace: &replace, Destroy: &destroy})
}

func (a *App) emitStep(ev executor.StepEvent) {
	if ev.Skipped || ev.Running {
		return
	}
	l := JSONApplyLine{Type: "step", Address: ev.Addr.String(), Action: ev.Action.String(), Phase: "start"}
	if ev.Action == planner.Replace {
		if ev.Kind == executor.StepDown {
			l.Phase = "destroy-start"
		} else {
			l.Phase = "create-start"
		}
	}
	if ev.Done {
		secs := ev.Elapsed.Seconds()
		l.Elapsed = &secs
		l.Phase = l.Phase[:len(l.Phase)-len("start")] + "done"
		if ev.Err != nil {
			l.Phase = l.Phase[:len(l.Phase)-len("done")] + "failed"
			l.Reason = ev.Err.Error()
		} else if ev.Kind == executor.StepUp {
			l.Pid = ev.Observed.Pid
		}
	}
	a.emit(l)
}
