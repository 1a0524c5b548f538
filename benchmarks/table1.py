"""Reproduce Table 1 and Figure 3 of Wolleb et al. (2024) on the offline MNI-derived benchmark.

A thin wrapper around :mod:`skberdiff.benchmark` (one implementation); these are equivalent::

    python benchmarks/table1.py --preset small --quick --out results/quick
    python -m skberdiff.benchmark table1 --preset small --quick --out results/quick

Run ``python benchmarks/table1.py --help`` for the options, and see ``docs/benchmark_results.md``
for measured results and the exact commands.
"""

import sys

from skberdiff.benchmark import main

if __name__ == "__main__":
    sys.exit(main(["table1"] + sys.argv[1:]))
