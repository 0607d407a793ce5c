"""`interir restore` (to be written)."""
