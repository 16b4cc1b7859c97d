"""The app replica: what runs inside each app container (standalone: imports nothing from the harness)."""
