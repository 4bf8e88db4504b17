"""Inference: NUTS and SVI return InferenceData, EM returns EMResult."""

from bayesgmm.inference.nuts import fit_nuts
from bayesgmm.inference.svi import fit_svi

__all__ = ["fit_nuts", "fit_svi"]
