"""`python -m guardrails.testing seed --rows N`: the test kit's commands (see testing/seed.py)."""

import sys

from guardrails.testing.seed import main

USAGE = "usage: python -m guardrails.testing seed [--rows N] [--seed S] [--module app.seed]"

if __name__ == "__main__":
    if sys.argv[1:2] != ["seed"]:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[2:]))
