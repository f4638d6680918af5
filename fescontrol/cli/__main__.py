"""``python -m fescontrol.cli``: the same as the ``fes`` command."""
from fescontrol.cli import main

main()
