"""Work on posterior draws: InferenceData in, new objects out. Never runs inference."""

from bayesgmm.posterior.draws import params_from_idata

__all__ = ["params_from_idata"]
