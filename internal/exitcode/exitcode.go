// Package exitcode holds the exit codes every reprise command returns, so
// that scripts and CI read the agent, the collector and the replayer alike.
package exitcode

const (
	// OK: the command did what was asked.
	OK = 0
	// Failed: the command ran and a check it makes failed (replay
	// mismatches, a missed goal, an unmatched call in strict mode).
	Failed = 1
	// Error: a usage or runtime error.
	Error = 2
)
