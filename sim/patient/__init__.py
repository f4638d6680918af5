"""A simulated drop-foot patient: stimulation in, foot pitch rate out (docs/patient-model.md).

:mod:`fescontrol.sim.patient.params` reads the seeded population YAML, :mod:`fescontrol.sim.patient.model` is the
muscle and foot physics, :mod:`fescontrol.sim.patient.swing` the gait kinematics taken from a
recording, :mod:`fescontrol.sim.patient.closed_loop` the sample-by-sample replay through the device's
own controller.
"""
