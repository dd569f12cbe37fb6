package milter

// Metrics receives the events the Prometheus collectors count. The daemon
// wires internal/metrics; NopMetrics discards everything.
type Metrics interface {
	// Message is called once per message with its decision.
	Message(d *Decision)
	// Panic is called for each recovered panic, with the milter stage.
	Panic(stage string)
}

// NopMetrics counts nothing.
type NopMetrics struct{}

// Message does nothing.
func (NopMetrics) Message(*Decision) {}

// Panic does nothing.
func (NopMetrics) Panic(string) {}
