package milter

// Recorder takes every message's decision once its reply is decided, for
// the aggregate reports (internal/reporter). Record must not block or fail
// the message: it is called on the reply path, and keeps nothing of d after
// it returns. The daemon wires one only when reporting is enabled.
type Recorder interface {
	Record(d *Decision)
}

// SetRecorder gives the engine its recorder. Call it before the engine
// serves any message (NewEngine, then SetRecorder, then Server.SetEngine);
// nil records nothing.
func (e *Engine) SetRecorder(r Recorder) { e.recorder = r }
