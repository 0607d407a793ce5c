"""`interir synth` (to be written)."""
