"""Trace format v1: reader, writer, validator, and replay against the model."""
