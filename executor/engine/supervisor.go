package engine

// hold marks inst stopped by the user (orch stop): no restart policy, no
// edit and no promotion starts it until release. A pending restart is
// dropped and its crash-loop count starts afresh.
func (inst *instance) hold() {
	inst.held = true
	if inst.timer != nil {
		inst.timer.Stop()
		inst.timer = nil
	}
	inst.history, inst.attempt = nil, 0
	inst.manual, inst.killing = false, false
}

// release ends a hold (orch start).
func (inst *instance) release() { inst.held = false }

// stopSupervising ends the supervision of inst's current generation
// before the engine stops it on purpose: its exit is not a crash, its
// health is no longer checked.
func (inst *instance) stopSupervising() {
	if inst.cancel != nil {
		inst.cancel()
	}
	inst.running, inst.healthy, inst.paused = false, false, false
	inst.exitBusy, inst.sickBusy = nil, ""
}
