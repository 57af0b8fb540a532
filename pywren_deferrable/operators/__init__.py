"""operators of pywren_deferrable."""
