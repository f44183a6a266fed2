"""Applications built on the library: the ``parasolve`` command, its demo, the paper's reproductions
and the benchmark runner. Nothing in ``parasolve`` imports this package."""
