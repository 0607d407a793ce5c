"""`interir demo` (to be written)."""
