# Writes tests/data/faithful_outliers.csv and tests/data/mclust_noise.json: mclust 6.0.0 noise
# fits (a uniform component of density Vinv, plus G = 2 Gaussians) of the bundled faithful data
# with 15 outliers added uniformly over [0, 7] x [20, 120]. The initial noise guess is fixed:
# the added rows (column noise_init). Vinv is 1 / the volume of the data's bounding box, as
# bayesgmm uses by default (mclust's own default, hypvol, is also written, for information).
# Run from the repository root: Rscript tests/data/mclust_noise.R > tests/data/mclust_noise.json
suppressMessages(library(mclust))
f <- read.csv("bayesgmm/datasets/data/faithful.csv")
set.seed(19)
n_out <- 15
out <- data.frame(eruptions = round(runif(n_out, 0, 7), 3), waiting = round(runif(n_out, 20, 120), 1))
X <- rbind(f, out)
noise_init <- c(rep(0L, nrow(f)), rep(1L, n_out))
write.csv(cbind(X, noise_init = noise_init), "tests/data/faithful_outliers.csv", row.names = FALSE)
X <- as.matrix(X)
Vinv <- 1 / prod(apply(X, 2, function(col) diff(range(col))))
control <- emControl(tol = c(1e-12, sqrt(.Machine$double.eps)))
res <- list()
for (model in c("VVV", "EEE", "VVI", "VII")) {
  fit <- Mclust(X, G = 2, modelNames = model, initialization = list(noise = noise_init == 1),
    Vinv = Vinv, control = control, verbose = FALSE)
  p <- fit$parameters
  e <- estep(data = X, modelName = model, parameters = p)
  res[[length(res) + 1]] <- list(model = model, G = 2, loglik = fit$loglik, bic = fit$bic,
    icl = icl(fit), df = fit$df, loglik_at_parameters = e$loglik, pro = p$pro, means = t(p$mean),
    covariances = lapply(1:2, function(k) p$variance$sigma[, , k]), n_noise = sum(fit$classification == 0))
}
cat(jsonlite::toJSON(list(Vinv = Vinv, hypvol = hypvol(X), fits = res), digits = NA, auto_unbox = TRUE))
