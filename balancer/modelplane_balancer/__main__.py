"""``python -m modelplane_balancer``: ``modelplane balancer`` without the console script."""

import sys

from modelplane_balancer.cli import main

sys.exit(main())
