"""Work on posterior draws: InferenceData in, new objects out. Never runs inference."""

from bayesgmm.posterior.assignments import coclustering_matrix, membership_probabilities, sample_assignments
from bayesgmm.posterior.draws import params_from_idata
from bayesgmm.posterior.imputation import impute
from bayesgmm.posterior.noise import noise_probability
from bayesgmm.posterior.partition import BestPartition, best_partition
from bayesgmm.posterior.relabel import relabel
from bayesgmm.posterior.summary import summary
from bayesgmm.posterior.switching import SwitchingReport, label_switching_report

__all__ = [
    "params_from_idata",
    "BestPartition",
    "SwitchingReport",
    "best_partition",
    "coclustering_matrix",
    "impute",
    "label_switching_report",
    "membership_probabilities",
    "noise_probability",
    "relabel",
    "sample_assignments",
    "summary",
]
