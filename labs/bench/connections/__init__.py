"""The connection bench: plan (pure), the load processes (client, load), the report, and the run."""
