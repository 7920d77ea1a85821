"""Static files guard (03_closure_gains_var: a closure gains a captured variable)."""
