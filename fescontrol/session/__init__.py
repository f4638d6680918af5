"""A patient session in the loop thread: modes, intensity, records, the session log. Never
imports fescontrol.sim."""
