"""A scenario's stack kept up for a live demonstration: `up`, `down`, `fault`, `heal` and the live view."""
