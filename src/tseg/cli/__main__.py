"""``python -m tseg.cli``, as torchrun runs it: the ``tseg`` command."""

import sys

from . import main

sys.exit(main())
