"""triggers of pywren_deferrable."""
