import os
import sys

from .cli import main

code = main()
# Leave at once: interpreter finalization restores the default signal handlers, and a Ctrl-C in that last
# window would kill the process with no line. Everything the run started is already removed.
sys.stdout.flush()
sys.stderr.flush()
os._exit(code)
