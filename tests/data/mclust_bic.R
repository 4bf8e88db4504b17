# Oracle for tests/test_em_mclust_models.py: mclust's BIC, log-likelihood and number of
# parameters of every covariance model x number of components on faithful and iris.
# Run from the repository root: Rscript tests/data/mclust_bic.R
# Needs R with mclust and jsonlite (Debian: r-cran-mclust, r-cran-jsonlite).
suppressPackageStartupMessages({
  library(mclust)
  library(jsonlite)
})
models <- c("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
            "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV")
datasets <- list(
  # The columns bayesgmm.load_dataset returns: every numeric column, species dropped.
  faithful = read.csv("bayesgmm/datasets/data/faithful.csv"),
  iris = read.csv("bayesgmm/datasets/data/iris.csv")[, 1:4]
)
rows <- list()
for (name in names(datasets)) {
  X <- as.matrix(datasets[[name]])
  table <- mclustBIC(X, G = 1:5, modelNames = models)
  for (m in models) {
    for (g in 1:5) {
      fit <- Mclust(X, G = g, modelNames = m, verbose = FALSE)
      ok <- !is.null(fit)
      rows[[length(rows) + 1]] <- list(
        dataset = name, model = m, n_components = g,
        n_parameters = nMclustParams(m, ncol(X), g),
        bic = if (ok) fit$bic else NA,
        log_likelihood = if (ok) fit$loglik else NA,
        bic_table = table[as.character(g), m]
      )
    }
  }
}
out <- list(
  source = "tests/data/mclust_bic.R: mclust::Mclust(X, G, modelNames) with its defaults",
  mclust_version = as.character(packageVersion("mclust")),
  r_version = R.version.string,
  bic_sign = "mclust's: 2 log L - n_parameters log(n_obs), larger is better",
  results = rows
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", pretty = TRUE),
           "tests/data/mclust_bic.json")
