"""`python -m guardrails`: the command line (see guardrails.cli)."""

import sys

from guardrails.cli import main

if __name__ == "__main__":
    sys.exit(main())
