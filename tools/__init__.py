"""Project tools run by hand or by the tests (not part of the installed library)."""
