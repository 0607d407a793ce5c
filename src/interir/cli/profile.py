"""`interir profile` (to be written)."""
