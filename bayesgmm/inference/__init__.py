"""Inference: NUTS and SVI return InferenceData, EM returns EMResult."""

from bayesgmm.inference.nuts import fit_nuts

__all__ = ["fit_nuts"]
