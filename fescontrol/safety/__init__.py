"""The one gate: the only code that calls ``Stimulator.set_output`` (tests/test_layers.py checks it)."""
