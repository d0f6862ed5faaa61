"""``python -m bench.balancer`` (see run.py)."""

from bench.balancer.run import main

main()
