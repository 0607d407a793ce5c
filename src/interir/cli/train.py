"""`interir train` (to be written)."""
