"""Static files guard (03b_closure_live_instance_refused: a closure gains a captured variable)."""
