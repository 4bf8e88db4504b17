"""The ``bayesgmm`` command line: fit, summarise, predict, plot and choose the number of components.

``bayesgmm fit`` fits a mixture (NUTS, SVI or EM) to a bundled data set or a CSV, Parquet
or ``.npy`` file and can save the model and each row's memberships; ``summary``,
``predict`` and ``plot`` read a saved model; ``select-k`` compares numbers of components.
Run ``bayesgmm --help`` or ``bayesgmm COMMAND --help`` for the options and examples.
The heavy modules (JAX, the fits, matplotlib) are imported inside the commands.
"""

from bayesgmm.cli._main import main

__all__ = ["main"]
