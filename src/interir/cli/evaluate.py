"""`interir evaluate` (to be written)."""
