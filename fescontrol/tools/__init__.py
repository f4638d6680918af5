"""Orthotist workflows: calibration, profile store, reports, live view. May use fescontrol.sim
(recordings, scoring)."""
