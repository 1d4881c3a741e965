package agent

import (
	"encoding/json"
	"time"

	"github.com/orch-dev/orch/planner"
)

// APIVersion is the prefix of every path: /v1/...
const APIVersion = "v1"

// Instance is one entry of GET /v1/status.
type Instance struct {
	Address    string `json:"address"`
	Runtime    string `json:"runtime,omitempty"`
	State      string `json:"state"`  // observed: running (paused: stopped by orch pause), exited, missing, unknown
	Status     string `json:"status"` // recorded: running, completed, failed, stopped; waiting
	Supervised bool   `json:"supervised"`
	Health     string `json:"health,omitempty"` // starting, healthy, unhealthy, paused; "" without a check
	Restarts   int    `json:"restarts"`
	Waiting    string `json:"waiting,omitempty"`
	// HeldBy is the dependency, not ready, for which liveness does not
	// restart this unhealthy instance.
	HeldBy     string     `json:"held_by,omitempty"`
	Pid        int        `json:"pid,omitempty"`
	ID         string     `json:"id,omitempty"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	UptimeSec  float64    `json:"uptime_seconds,omitempty"`
	ExitCode   *int       `json:"exit_code,omitempty"`
	Signal     string     `json:"signal,omitempty"`
	ConfigHash string     `json:"config_hash,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	UpdatedAt  *time.Time `json:"updated_at,omitempty"`
	// Memory and CPU use of a running instance, when its runtime can
	// tell (a native daemon in a cgroup of its own).
	MemoryBytes uint64 `json:"memory_bytes,omitempty"`
	// Service and Route are what a daemon's service block publishes;
	// Registered says whether it is published now (ready); Unpublished,
	// of a running instance that is not, why not.
	Service     string  `json:"service,omitempty"`
	Route       string  `json:"route,omitempty"`
	Registered  bool    `json:"registered,omitempty"`
	Unpublished string  `json:"unpublished,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"`
	// Says is what the instance says of itself (sd_notify STATUS=).
	Says string `json:"says,omitempty"`
}

// StatusResponse is the body of GET /v1/status.
type StatusResponse struct {
	Dir       string     `json:"dir"`
	Pid       int        `json:"pid"` // the agent's
	Instances []Instance `json:"instances"`
}

// SignalRequest is the body of POST /v1/signal/{addr}.
type SignalRequest struct {
	Signal string `json:"signal"`         // "HUP", "SIGHUP", any case
	Main   bool   `json:"main,omitempty"` // to the main process only, not its group
}

// RestartResponse is the body of POST /v1/restart/{addr}.
type RestartResponse struct {
	Address string `json:"address"`
	Pid     int    `json:"pid,omitempty"` // of the new process
	// Cascade, with ?cascade=1, lists the dependents restarted after it,
	// each once its dependencies among them are ready again.
	Cascade []string `json:"cascade,omitempty"`
}

// PlanRequest is the body of POST /v1/plan.
type PlanRequest struct {
	Destroy bool `json:"destroy,omitempty"`
	// Variables, when set, is the caller's spec.Config.VariablesHash: the
	// agent refuses (409) when the values of its own variables differ,
	// rather than plan with values the caller did not give.
	Variables string `json:"variables,omitempty"`
}

// PlanResponse is the body of POST /v1/plan.
type PlanResponse struct {
	// Text is the plan as orch plan prints it (no colours).
	Text        string            `json:"text"`
	Plan        *planner.JSONPlan `json:"plan"`
	HasChanges  bool              `json:"has_changes"`
	Diagnostics string            `json:"diagnostics,omitempty"` // warnings, rendered
}

// ApplyRequest is the body of POST /v1/apply and POST /v1/destroy.
type ApplyRequest struct {
	// Fingerprint of the plan the user approved (from POST /v1/plan);
	// empty: apply whatever the plan is now (-auto-approve).
	Fingerprint string `json:"fingerprint,omitempty"`
	// Variables: as in PlanRequest.
	Variables string `json:"variables,omitempty"`
}

// ApplyLine is one line of the NDJSON answer of POST /v1/apply and
// /v1/destroy: first the plan, then events as they happen, last the
// result. Exactly one field is set.
type ApplyLine struct {
	Plan   *PlanResponse   `json:"plan,omitempty"`
	Event  json.RawMessage `json:"event,omitempty"`
	Result *ApplyResult    `json:"result,omitempty"`
}

// ApplyResult ends an apply's stream.
type ApplyResult struct {
	OK      bool     `json:"ok"`
	Add     int      `json:"add"`
	Change  int      `json:"change"`
	Replace int      `json:"replace"`
	Destroy int      `json:"destroy"`
	Failed  []string `json:"failed,omitempty"` // addresses that failed or were skipped
	Error   string   `json:"error,omitempty"`
}

// ErrorResponse is the body of every 4xx and 5xx answer.
type ErrorResponse struct {
	Error string `json:"error"`
	// Diagnostics, rendered, when the configuration is invalid.
	Diagnostics string `json:"diagnostics,omitempty"`
}

// PauseResponse answers POST /v1/pause and /v1/resume.
type PauseResponse struct {
	Address string `json:"address"`
	Paused  bool   `json:"paused"`
}
