"""The reconnect-storm bench: plan (settings, trigger), client (a load process), wave (figures), run, report."""
