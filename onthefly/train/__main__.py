"""``python -m onthefly.train ...``: see :mod:`onthefly.train.main`."""
import sys

from .main import main

sys.exit(main())
