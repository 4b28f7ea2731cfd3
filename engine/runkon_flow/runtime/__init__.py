"""The engine runtime: FlowEngine, execution state and one module per node kind."""
