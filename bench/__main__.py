"""`python -m bench [--quick]`: the benchmark suite (bench/suite.py)."""

import sys

from bench.suite import main

if __name__ == "__main__":
    sys.exit(main())
