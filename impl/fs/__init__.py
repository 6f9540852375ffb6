"""Reference filesystems: callback sets for the implementation's engines."""
