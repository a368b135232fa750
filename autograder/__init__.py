"""Acceleration Lab's instructor tooling: build, validate, grade, report."""
