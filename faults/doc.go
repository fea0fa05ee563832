// Package faults holds fault-injection tests of delivery from agent to
// collector: the real collector binary on loopback, killed, stopped,
// throttled and restarted, fed by the agent's own exporter
// (agent/export). The tests count every exchange: each one the exporter
// reports acknowledged is stored exactly once, and each one not stored is
// in a drop counter. See docs/delivery.md.
package faults
