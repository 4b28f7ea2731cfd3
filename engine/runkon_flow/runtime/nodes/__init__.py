"""One module per node kind; `dispatch.execute_node` routes a node to its executor."""
