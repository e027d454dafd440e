"""Helpers shared by the test suite (tiny offline models, fixtures' builders)."""
