"""What a patient sees: the patient screen and its session wiring."""
