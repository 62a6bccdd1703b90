"""Data: MOABB datasets (synthetic or real), paradigms, windows, splits and their files."""
