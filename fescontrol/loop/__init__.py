"""The loop that ties kernel, machine and gate together (batch and real time) and opens the
ports. Never imports fescontrol.sim."""
