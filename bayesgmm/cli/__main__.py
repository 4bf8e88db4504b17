"""``python -m bayesgmm.cli``: the ``bayesgmm`` command."""

import sys

from bayesgmm.cli import main

sys.exit(main())
