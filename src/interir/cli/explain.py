"""`interir explain` (to be written)."""
