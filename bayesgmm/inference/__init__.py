"""Inference: NUTS and SVI return InferenceData, EM returns EMResult."""

from bayesgmm.inference.progress import import_tqdm_auto_quietly

# Before numpyro is imported: its tqdm.auto warns in a notebook kernel without ipywidgets.
import_tqdm_auto_quietly()

from bayesgmm.inference.em.fit import fit_em
from bayesgmm.inference.em.result import EMResult
from bayesgmm.inference.nuts import fit_nuts
from bayesgmm.inference.svi.fit import fit_svi

__all__ = ["EMResult", "fit_em", "fit_nuts", "fit_svi"]
