"""Filesystems written against dioconf.fsapi: one done right, and broken variants that
``dioconf check`` catches (see docs/check-your-filesystem.md)."""
