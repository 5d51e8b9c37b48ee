"""Test support shared by every suite: a real PostgreSQL per run, sample messages."""
