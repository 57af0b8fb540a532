"""hooks of pywren_deferrable."""
