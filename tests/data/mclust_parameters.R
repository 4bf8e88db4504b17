# Writes tests/data/mclust_parameters.json: mclust 6.0.0 fits (Mclust(X, G, modelNames)) of the
# bundled faithful and iris data: loglik, BIC, ICL, the fitted parameters, and the three
# criteria evaluated at those parameters.
# Run from the repository root: Rscript tests/data/mclust_parameters.R > tests/data/mclust_parameters.json
suppressMessages(library(mclust))
f <- read.csv("bayesgmm/datasets/data/faithful.csv"); ir <- read.csv("bayesgmm/datasets/data/iris.csv")[, 1:4]
out <- list()
for (spec in list(list(f, "faithful", "EEE", 3), list(f, "faithful", "VVV", 2), list(ir, "iris", "VVV", 3), list(ir, "iris", "VII", 4), list(f, "faithful", "VVI", 3))) {
  fit <- Mclust(spec[[1]], G = spec[[4]], modelNames = spec[[3]], verbose = FALSE)
  p <- fit$parameters
  # mclust's loglik, BIC and ICL come from its last E-step, before the last M-step; these
  # are the same three at the returned parameters (mclust's estep, bic and icl).
  e <- estep(data = spec[[1]], modelName = spec[[3]], parameters = p)
  at <- fit
  at$z <- e$z
  at$loglik <- e$loglik
  at$bic <- bic(spec[[3]], e$loglik, fit$n, fit$d, fit$G)
  out[[length(out) + 1]] <- list(data = spec[[2]], model = spec[[3]], G = spec[[4]], loglik = fit$loglik, bic = fit$bic, icl = icl(fit),
    loglik_at_parameters = at$loglik, bic_at_parameters = at$bic, icl_at_parameters = icl(at),
    weights = p$pro, means = t(p$mean), covariances = lapply(1:spec[[4]], function(k) p$variance$sigma[, , k]))
}
cat(jsonlite::toJSON(out, digits = NA, auto_unbox = TRUE))
