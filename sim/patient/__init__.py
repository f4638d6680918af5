"""A simulated drop-foot patient: stimulation in, foot pitch rate out (docs/patient-model.md).

:mod:`sim.patient.params` reads the seeded population YAML, :mod:`sim.patient.model` is the
muscle and foot physics, :mod:`sim.patient.swing` the gait kinematics taken from a
recording, :mod:`sim.patient.closed_loop` the sample-by-sample replay through the device's
own controller.
"""
