"""Helpers for the test suite: bounded subprocesses, the test PostgreSQL, the gateway under test."""
