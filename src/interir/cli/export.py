"""`interir export` (to be written)."""
