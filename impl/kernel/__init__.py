"""The real Linux kernel as an oracle: loop-mounted filesystems, tracefs recording, and
conversion of what the kernel did into v1 traces."""
