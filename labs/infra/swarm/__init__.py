"""The Docker Swarm engine: its nodes (a local one built on this machine, or one joined with `swarm use`),
the stack it runs, the operations and events on it."""
