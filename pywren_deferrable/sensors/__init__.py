"""sensors of pywren_deferrable."""
