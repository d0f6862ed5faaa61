"""Pure builders of a ModelDeployment's children: spec in, plain manifest dicts out, no I/O.

``render.render`` is the entry point; the other modules build one kind each. Output is
deterministic (same input, byte-identical output) so that reconciling twice writes nothing.
"""
