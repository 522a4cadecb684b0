"""Fixtures the fault tests share are in tests/conftest.py."""
