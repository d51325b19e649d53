"""Typed builders of test data, one module per domain; tests import these, never each other."""
