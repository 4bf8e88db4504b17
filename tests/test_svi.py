"""SVI: agreement with NUTS, spread of the guides, held-out predictive density, minibatches, layout.

Tolerances are in units of the NUTS posterior sd, fixed seeds throughout.
"""

import json
from functools import partial

import arviz as az
import jax
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
import scipy.linalg
from numpyro import handlers
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import log_density
from numpyro.optim import optax_to_numpyro
from scipy.special import logsumexp
from tqdm.std import tqdm

from bayesgmm import densities, fit_nuts, fit_svi, load_dataset, params_from_idata
from bayesgmm.inference.svi.loop import elbo_converged
from bayesgmm.models import gmm_model
from bayesgmm.sources import ArraySource, ChunkSource, row_blocks, streaming_moments

NUTS_SMALL = dict(num_warmup=200, num_samples=250, num_chains=2)


def simulated(n_obs=400, seed=0):
    """Two overlapping components with strongly correlated features (rho = 0.8): the posterior
    of each mean vector is correlated too, which a mean-field guide cannot represent."""
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    labels = rng.random(n_obs) < 0.4
    X = rng.multivariate_normal([0.0, 0.0], cov, n_obs)
    X[labels] += np.array([3.0, -1.0])
    return X


@pytest.fixture(scope="module")
def sim_fits():
    X = simulated()
    return {
        "nuts": fit_nuts(X, 2, seed=1, **NUTS_SMALL),
        "meanfield": fit_svi(X, 2, guide="meanfield", seed=2),
        "fullrank": fit_svi(X, 2, guide="fullrank", seed=3),
    }


def split(X, seed=0, frac=0.75):
    perm = np.random.default_rng(seed).permutation(len(X))
    cut = int(frac * len(X))
    return X[perm[:cut]], X[perm[cut:]]


def heldout_lpd(idata, X_test):
    """sum_i log mean_draws p(x_i | draw): the held-out log predictive density."""
    params = params_from_idata(idata)
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1, *a.shape[2:])), params)
    ll = np.asarray(jax.vmap(lambda p: densities.log_prob(p, X_test))(flat))
    return float(np.sum(logsumexp(ll, axis=0) - np.log(ll.shape[0])))


def means_draws(idata):
    """Posterior draws of the component means, ordered by the first feature, shape (n_draws, 4)."""
    means = idata.posterior["means"].values.reshape(-1, 2, 2)
    order = np.argsort(means[..., 0], axis=1)
    return np.take_along_axis(means, order[..., None], axis=1).reshape(len(means), -1)


def gaussian_w2(a, b):
    """2-Wasserstein distance between Gaussians fitted to two sets of draws (rows)."""
    ma, mb = a.mean(0), b.mean(0)
    ca, cb = np.cov(a.T), np.cov(b.T)
    root_b = scipy.linalg.sqrtm(cb)
    cross = scipy.linalg.sqrtm(root_b @ ca @ root_b)
    return float(np.sqrt(np.sum((ma - mb) ** 2) + np.trace(ca + cb - 2 * np.real(cross))))


def test_posterior_means_agree_with_nuts(sim_fits):
    # c = 0.5 sd: the NUTS mean has a Monte Carlo error of about sd / sqrt(ESS) < 0.1 sd, the
    # variational mean of a near-Gaussian posterior (n_obs = 400) is biased by a small fraction
    # of an sd and Adam's jitter at lr 0.01 is ~0.1 sd here; 0.5 sd leaves room for all three.
    nuts = means_draws(sim_fits["nuts"])
    for guide in ("meanfield", "fullrank"):
        svi = means_draws(sim_fits[guide])
        assert np.all(np.abs(svi.mean(0) - nuts.mean(0)) < 0.5 * nuts.std(0)), guide
    weights = np.sort(sim_fits["nuts"].posterior["weights"].values.reshape(-1, 2), axis=1)
    svi_w = np.sort(sim_fits["fullrank"].posterior["weights"].values.reshape(-1, 2), axis=1)
    assert np.all(np.abs(svi_w.mean(0) - weights.mean(0)) < 0.5 * weights.std(0))


def test_fullrank_spread_closer_to_nuts_than_meanfield(sim_fits):
    nuts = means_draws(sim_fits["nuts"])
    w2 = {g: gaussian_w2(means_draws(sim_fits[g]), nuts) for g in ("meanfield", "fullrank")}
    sd_err = {g: np.abs(means_draws(sim_fits[g]).std(0) / nuts.std(0) - 1).max() for g in w2}
    print(f"W2 to NUTS: {w2}; max relative sd error: {sd_err}")
    assert w2["fullrank"] < w2["meanfield"]
    # Mean-field cannot hold the 0.8 correlation between the coordinates of each mean, so it
    # underestimates their marginal sds (by about 1 - sqrt(1 - 0.8**2) = 40% at most).
    assert sd_err["fullrank"] < sd_err["meanfield"]


def test_layout_identical_to_nuts(sim_fits, tmp_path):
    nuts, svi = sim_fits["nuts"], sim_fits["fullrank"]
    for group in ("posterior", "log_likelihood", "observed_data", "constant_data"):
        assert set(svi[group].data_vars) == set(nuts[group].data_vars), group
        for name in svi[group].data_vars:
            assert svi[group][name].dims == nuts[group][name].dims, (group, name)
    assert svi.posterior.sizes["chain"] == 1 and svi.posterior.sizes["draw"] == 1000
    assert svi.elbo_trace["elbo"].dims == ("restart", "step")
    assert svi.elbo_trace.sizes["step"] == svi.attrs["n_steps"]
    assert set(svi.sample_stats.data_vars) == {"lp", "log_q"}
    assert json.loads(svi.attrs["pareto_k"])[0] < 0.7  # the guide is usable on this posterior
    az.loo(svi)  # the log_likelihood group works with ArviZ
    path = tmp_path / "svi.nc"
    svi.to_netcdf(path)
    back = az.from_netcdf(path)
    np.testing.assert_array_equal(back.elbo_trace["elbo"].values, svi.elbo_trace["elbo"].values)


def test_convergence_rule_stops_early(sim_fits):
    idata = sim_fits["fullrank"]
    assert idata.attrs["converged"] == 1
    assert idata.attrs["n_steps"] < idata.attrs["max_steps"] == 20_000
    # The stopping rule's settings are kept with the fit (full batch: compared 2000 steps back).
    assert (idata.attrs["tol"], idata.attrs["chunk_size"], idata.attrs["convergence_lag_steps"]) == (
        1e-4,
        200,
        2000,
    )
    elbo = idata.elbo_trace["elbo"].values[0]
    assert elbo[-200:].mean() > elbo[:200].mean()


def test_elbo_converged_rule():
    rng = np.random.default_rng(0)
    flat = rng.normal(100.0, 1.0, (2, 200))
    assert elbo_converged(flat, rng.normal(100.0, 1.0, (1, 200)), 1e-6).all()  # noise only
    assert not elbo_converged(flat[:1], flat[:1] - 50.0, 1e-6).any()  # clear progress


def test_heldout_lpd_faithful_within_one_percent_of_nuts():
    X, _ = load_dataset("faithful")
    train, test = split(X)
    nuts = heldout_lpd(fit_nuts(train, 2, seed=0, **NUTS_SMALL), test)
    svi = heldout_lpd(fit_svi(train, 2, guide="fullrank", seed=0), test)
    print(f"faithful held-out LPD: NUTS {nuts:.2f}, SVI full-rank {svi:.2f}")
    assert abs(svi - nuts) < 0.01 * abs(nuts)


@pytest.mark.slow
def test_heldout_lpd_iris_within_one_percent_of_nuts():
    # Iris with K=3 (112 training rows, 44 parameters) has a posterior far from Gaussian in
    # the two overlapping components (versicolor, virginica). The ELBO's full-rank guide
    # had 0.6-0.75 times NUTS's posterior sd there, and a held-out LPD 1.5-2% above NUTS's
    # (-57.3 at its default stopping point, -57.6 optimised to the end, against -58.48):
    # narrower than the posterior, it scores better on this split. The importance-weighted
    # bound (renyi_alpha=0) with 64 particles and its doubly reparameterised gradient
    # covers more of the mass: -58.30 to -58.09 over seeds 0-3 (1000 draws; +0.3% to
    # +0.7%), -58.67 to -58.03 over seeds 0-5 with 4000 draws.
    # The NUTS reference must itself have converged: with seed 0 one of its 4 chains sat
    # at other weights (R-hat 1.56, 44 divergences). Seed 1: max R-hat 1.015, none.
    # Iris also has modes where a component collapses onto tied (rounded) values, with a
    # far higher posterior density; both methods start from the EM start's mode, and that
    # is the one compared here (the test checks that the fits stayed in it). Chains started
    # at other EM optima (fit_nuts's default) find a competing mode on this split, which
    # the diagnostics flag; the reference is the posterior within the best one.
    X, _ = load_dataset("iris")
    train, test = split(X)
    ref = fit_nuts(train, 3, seed=1, num_warmup=1000, num_samples=1000, num_chains=4, init="em-best")
    assert int(ref.sample_stats["diverging"].sum()) == 0
    assert float(az.rhat(ref, var_names=["weights", "means"]).to_array().max()) < 1.02
    nuts = heldout_lpd(ref, test)
    for seed in range(4):
        idata = fit_svi(train, 3, guide="fullrank", renyi_alpha=0.0, num_particles=64, seed=seed)
        svi = heldout_lpd(idata, test)
        print(f"iris held-out LPD: NUTS {nuts:.2f}, SVI full-rank, importance-weighted {svi:.2f}")
        assert abs(svi - nuts) < 0.01 * abs(nuts), seed
        smallest_sd = np.sqrt(np.einsum("...ii->...i", idata.posterior["covariances"].values)).min()
        # No component collapsed onto tied values: a collapsed one has sd 0.008 cm (the EM
        # start's floor); the smallest over seed 0's draws was 0.074 cm.
        assert smallest_sd > 0.03


def test_em_start_avoids_components_collapsed_onto_tied_values():
    # On the 150 iris rows, fit_svi's seed 0 gives the EM start this seed. Of its 4 EM runs
    # the best lower bound had put a component on setosa rows with tied petal widths
    # (variance at EM's floor, 1e-4 in standardised units); NUTS and SVI started there stay.
    from sklearn.cluster import kmeans_plusplus

    from bayesgmm._validation import standardize
    from bayesgmm.inference.em.fit import fit_em
    from bayesgmm.inference.start import _collapsed, _seeded_start, em_start

    X, _ = load_dataset("iris")
    Z = standardize(X)[0]
    seed = 431640318
    # Brute force: the same 4 runs, by hand.
    rng = np.random.RandomState(seed)
    runs = []
    for _ in range(4):
        _, idx = kmeans_plusplus(Z, 3, random_state=rng)
        runs.append(fit_em(Z, 3, "full", **_seeded_start(Z[idx], "full")))
    best = max(runs, key=lambda r: r.lower_bound)
    assert _collapsed(best.params)  # the case this test is about
    best_whole = max((r for r in runs if not _collapsed(r.params)), key=lambda r: r.lower_bound)
    start = em_start(Z, 3, "full", seed=seed)
    np.testing.assert_allclose(np.asarray(start.means), np.asarray(best_whole.params.means), rtol=1e-10)
    L = np.asarray(start.scale_tril)
    assert np.linalg.eigvalsh(L @ np.swapaxes(L, -1, -2)).min() > 2e-3

    # When every run collapses (each cluster's second feature is one repeated value), the
    # best is kept and the user is told why.
    rng = np.random.default_rng(0)
    Z = np.column_stack([rng.normal(0.0, 1.0, 90), np.repeat([-3.0, 0.0, 3.0], 30)])
    Z[:, 0] += np.repeat([-4.0, 0.0, 4.0], 30)
    with pytest.warns(UserWarning, match="tied values"):
        em_start(Z, 3, "full", seed=0)


def test_overfitted_start_warns_about_tied_values_only_for_the_size_it_uses():
    """Sparse and dp fits try EM with 1..n_components: the larger ones collapse on rounded data."""
    import warnings

    from bayesgmm.inference.start import _collapsed, _good_em, _heard, _sizes, em_start

    X, _ = load_dataset("iris")
    Z = (X - X.mean(0)) / X.std(0)
    # The case: the EM runs with many components, in the order em_start makes them, collapse.
    rng = np.random.RandomState(0)
    said = [_heard(_good_em, Z, k, "full", 4, rng)[1] for k in _sizes(8, True)]
    assert any("tied values" in str(w.message) for ws in said for w in ws)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        start = em_start(Z, 8, "full", seed=0, overfitted=True)
    occupied = int((np.asarray(start.weights) > 0.01).sum())
    assert occupied < 8
    assert not _collapsed(start)


def test_run_chunks_averages_the_last_chunk_and_compares_far_back():
    from numpyro.infer.autoguide import AutoDelta

    from bayesgmm.inference.svi.loop import CONVERGENCE_LAG_STEPS, run_chunks
    from bayesgmm.inference.svi.program import TracingSVI, _chunk_runner

    # A MAP fit of one mean (Adam, no noise): the chunk returns the mean of its active steps'
    # parameters, which single-step chunks from the same state reproduce.
    def model(Z):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("obs", Z.shape[0]):
            numpyro.sample("z", dist.Normal(mu, 1.0), obs=Z)

    def make():
        return SVI(model, AutoDelta(model), optax_to_numpyro(optax.adam(0.1)), Trace_ELBO())

    Z = jax.numpy.full(4, 3.0)
    state = make().init(jax.random.PRNGKey(0), Z=Z)
    stacked = jax.tree_util.tree_map(lambda a: a[None], state)  # one restart
    states = stacked
    key = jax.random.PRNGKey(1)
    _, losses, mean = _chunk_runner(TracingSVI(make), 8, "full")(states, Z, None, key, 5)
    assert np.isnan(np.asarray(losses)[0, 5:]).all()
    one_step = _chunk_runner(TracingSVI(make), 1, "full")
    path = []
    for _ in range(5):
        states, _, params = one_step(states, Z, None, key, 1)
        path.append(float(params["mu_auto_loc"][0]))
    np.testing.assert_allclose(float(mean["mu_auto_loc"][0]), np.mean(path), rtol=1e-12)

    # After 5 chunks of fast progress, 0.1 per chunk: under 2 standard errors of one chunk's
    # noise (sd 1 over 50 steps: 2 SE = 0.4), but 0.5 to 4 against the chunks 5 to 40
    # back (2000 steps). Chunk by chunk the fit would stop at chunk 7; it goes on to max_steps.
    class Drift:
        def __init__(self):
            self.calls, self.rng = 0, np.random.default_rng(0)

        def run_chunk(self, states, data, rows, key, n_active):
            self.calls += 1
            level = 100.0 - 5.0 * min(self.calls, 5) - 0.1 * self.calls
            moved = jax.tree_util.tree_map(lambda p: p + 1.0, states.optim_state[1][0])
            return states, level + self.rng.normal(0.0, 1.0, (1, 50)), moved

    drift = Drift()
    run = partial(run_chunks, drift, stacked, lambda: (Z, None), lag_steps=CONVERGENCE_LAG_STEPS)
    final, trace, converged = run(2000, 50, 0.0, key, tqdm(disable=True))
    assert not converged and trace.shape == (1, 2000)
    # The states returned hold the last chunk's mean parameters, not its last step's.
    np.testing.assert_allclose(
        final.optim_state[1][0]["mu_auto_loc"], state.optim_state[1][0]["mu_auto_loc"] + 1.0
    )
    chunks = -trace.reshape(40, 50)
    assert not elbo_converged(chunks[5:6], chunks[15:16], 0.0).all()  # 10 chunks back: 1.0
    assert elbo_converged(chunks[5:6], chunks[6:7], 0.0).all()  # 1 chunk back: noise


def test_minibatch_likelihood_is_unbiased():
    # Averaged over the minibatches of a partition of the rows, the scaled minibatch log
    # density equals the full-data one exactly (so a uniformly random minibatch is unbiased).
    Z = simulated(n_obs=120)
    kwargs = dict(n_components=2, n_features=2)
    sites = {
        "weights": np.array([0.4, 0.6]),
        "means": np.array([[0.0, 0.0], [1.0, -1.0]]),
        "scales": np.ones((2, 2)),
        "corr_cholesky": np.broadcast_to(np.eye(2), (2, 2, 2)),
    }
    full, _ = log_density(gmm_model, (), dict(Z=Z, **kwargs), sites)
    batches = [
        log_density(
            handlers.seed(gmm_model, 0), (), dict(Z=b, n_obs=120, subsample_size=30, **kwargs), sites
        )[0]
        for b in np.split(Z, 4)
    ]
    np.testing.assert_allclose(np.mean(batches), full, rtol=1e-10)


def test_minibatch_memmap_and_chunks_agree_with_full_batch(tmp_path):
    X = simulated(n_obs=4000, seed=5)
    path = tmp_path / "x.dat"
    mm = np.memmap(path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    # No log_likelihood group: not checked here, and it is most of the cost of these fits.
    common = dict(guide="meanfield", seed=0, num_samples=200, log_likelihood=False)
    full = fit_svi(X, 2, **common)
    from_memmap = fit_svi(
        np.memmap(path, dtype=np.float64, mode="r", shape=X.shape),
        2,
        batch_size=256,
        max_observed=1000,
        **common,
    )
    from_chunks = fit_svi(
        lambda: (X[i : i + 700] for i in range(0, len(X), 700)),
        2,
        batch_size=256,
        **common,
    )
    ref = means_draws(full)
    for idata in (from_memmap, from_chunks):
        assert idata.attrs["batch_size"] == 256 and idata.attrs["n_obs"] == 4000
        assert np.all(np.abs(means_draws(idata).mean(0) - ref.mean(0)) < 3 * ref.std(0))
    assert from_memmap.observed_data["X"].shape == (1000, 2) and from_memmap.attrs["observed_subset"] == 1


def test_streaming_moments_match_numpy(rng):
    X = rng.normal(5.0, 3.0, (1000, 3))
    X[:, 2] = 7.0  # constant feature gets scale 1
    n_obs, loc, scale = streaming_moments(ChunkSource(lambda: np.array_split(X, 7)))
    assert n_obs == 1000
    np.testing.assert_allclose(loc, X.mean(0))
    np.testing.assert_allclose(scale, [*X[:, :2].std(0), 1.0])


def test_row_blocks_sample_every_row(rng):
    X = np.arange(100.0)[:, None]
    block = next(row_blocks(ArraySource(X), 5000, rng))
    assert block.shape == (5000, 1) and set(block[:, 0]) == set(X[:, 0])
    stream = row_blocks(ChunkSource(lambda: np.array_split(X, 3)), 40, rng)
    seen = np.concatenate([next(stream) for _ in range(5)])  # 200 rows: exactly two passes
    np.testing.assert_array_equal(np.bincount(seen[:, 0].astype(int)), np.full(100, 2))


def test_map_guide_and_restarts_as_chains():
    X, _ = load_dataset("faithful")
    idata = fit_svi(X, 2, guide="map", n_init=3, keep="chains", seed=0, max_steps=600)
    assert idata.posterior.sizes["chain"] == 3 and idata.posterior.sizes["draw"] == 1
    assert idata.elbo_trace.sizes["restart"] == 3
    with pytest.raises(ValueError, match="guide"):
        fit_svi(X, 2, guide="laplace")


@pytest.mark.parametrize("guide", ["meanfield", "fullrank"])
def test_ordered_elbo_equals_numpyro_trace_elbo(guide):
    from numpyro.infer import SVI, Trace_ELBO

    from bayesgmm.inference.svi.config import make_guide
    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    def losses(model, n_particles, key, Z):
        # Guide and SVI are set up inside the trace: op by op, each of numpyro's few hundred
        # small set-up ops would compile on its own.
        g = make_guide(guide, model, init_to_median, 0.3)
        svi = SVI(model, g, optax_to_numpyro(optax.adam(0.01)), OrderedTraceELBO())
        params = svi.get_params(svi.init(jax.random.PRNGKey(0), Z=Z))
        return [
            elbo(num_particles=n_particles).loss(key, params, model, g, Z=Z)
            for elbo in (OrderedTraceELBO, Trace_ELBO)
        ]

    Z = simulated(200)
    model = partial(gmm_model, n_components=2, n_features=2, covariance_type="full")
    minibatch = partial(model, n_obs=1000, subsample_size=200)  # likelihood scaled by 5
    for m, n_particles in ((model, 1), (minibatch, 3)):
        ours, numpyro_loss = jax.jit(partial(losses, m, n_particles))(jax.random.PRNGKey(n_particles), Z)
        np.testing.assert_allclose(ours, numpyro_loss, rtol=1e-12)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_ordered_renyi_equals_numpyro_renyi_elbo(alpha):
    from numpyro.infer import RenyiELBO

    from bayesgmm.inference.svi.config import make_guide
    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    def losses(key, Z):
        g = make_guide("fullrank", model, init_to_median, 0.3)
        svi = SVI(model, g, optax_to_numpyro(optax.adam(0.01)), OrderedTraceELBO())
        params = svi.get_params(svi.init(jax.random.PRNGKey(0), Z=Z))
        # numpyro's RenyiELBO splits a plate key off first, then draws each particle as
        # Trace_ELBO does: the second half of that split gives the same draws here.
        loss = OrderedTraceELBO(num_particles=4, alpha=alpha)
        ours = loss.loss(jax.random.split(key)[1], params, model, g, Z=Z)
        return ours, RenyiELBO(alpha=alpha, num_particles=4).loss(key, params, model, g, Z=Z)

    model = partial(gmm_model, n_components=2, n_features=2, covariance_type="full")
    ours, numpyro_loss = jax.jit(losses)(jax.random.PRNGKey(3), simulated(200))
    np.testing.assert_allclose(ours, numpyro_loss, rtol=1e-12)


def _normal_mean_problem():
    """Normal mean, unit variance, Normal(0, 2) prior; a Normal guide with parameters
    ``m`` and ``log_s``, and the exact posterior's values of them."""
    z = np.array([0.3, -1.2, 2.1, 0.8])
    post_var = 1.0 / (1.0 / 4.0 + len(z))

    def model(Z):
        mu = numpyro.sample("mu", dist.Normal(0.0, 2.0))
        with numpyro.plate("obs", len(Z)):
            numpyro.sample("z", dist.Normal(mu, 1.0), obs=Z)

    def guide(Z):
        m, log_s = numpyro.param("m", 0.0), numpyro.param("log_s", 0.0)
        numpyro.sample("mu", dist.Normal(m, jax.numpy.exp(log_s)))

    exact = {"m": post_var * z.sum(), "log_s": 0.5 * np.log(post_var)}
    return z, model, guide, exact


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("n_particles", [1, 5])
def test_renyi_bound_of_the_exact_posterior_is_the_log_evidence(alpha, n_particles):
    # With the exact posterior as guide every particle's log p - log q is the log evidence,
    # so every bound equals it.
    from scipy.stats import multivariate_normal

    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    z, model, guide, exact = _normal_mean_problem()
    log_evidence = multivariate_normal(np.zeros(len(z)), np.eye(len(z)) + 4.0).logpdf(z)
    elbo = OrderedTraceELBO(num_particles=n_particles, alpha=alpha)
    loss = elbo.loss(jax.random.PRNGKey(0), exact, model, guide, Z=z)
    np.testing.assert_allclose(-float(loss), log_evidence, rtol=1e-10)


def test_importance_weighted_bound_is_tighter_than_the_elbo():
    # A guide twice as wide as the posterior: the importance-weighted bound (alpha = 0) lies
    # between the ELBO and the log evidence, closer with more particles (averaged over keys).
    from scipy.stats import multivariate_normal

    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    z, model, guide, exact = _normal_mean_problem()
    wide = {"m": exact["m"], "log_s": exact["log_s"] + np.log(2.0)}
    log_evidence = multivariate_normal(np.zeros(4), np.eye(4) + 4.0).logpdf(z)
    keys = jax.random.split(jax.random.PRNGKey(0), 2000)

    def bound(n_particles, alpha):
        elbo = OrderedTraceELBO(num_particles=n_particles, alpha=alpha)
        return -float(jax.vmap(lambda k: elbo.loss(k, wide, model, guide, Z=z))(keys).mean())

    elbo, iw4, iw32 = bound(4, 1.0), bound(4, 0.0), bound(32, 0.0)
    # Exact ELBO of a Normal guide with twice the posterior sd: log Z - KL(q || p). Each
    # draw's log p - log q is a constant minus 1.5 chi2(1), sd 1.5 sqrt(2); 4 standard errors
    # over the 8000 draws.
    kl = 0.5 * 4 - 0.5 - np.log(2.0)
    np.testing.assert_allclose(elbo, log_evidence - kl, atol=4 * 1.5 * np.sqrt(2) / np.sqrt(8000))
    assert elbo < iw4 < iw32 < log_evidence


def _gradients(elbo, params, keys, model, guide, z):
    """The loss's gradient for each key, leaves of shape (n_keys,)."""
    grad = jax.grad(lambda p, k: elbo.loss(k, p, model, guide, Z=z))
    return jax.vmap(lambda k: grad(params, k))(keys)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_doubly_reparameterised_gradient_is_unbiased_and_less_noisy(alpha):
    # Against numpyro's RenyiELBO (the plain reparameterised gradient of the same bound)
    # at a guide 50% wider than the posterior and off its mean: the means agree within 4
    # standard errors of their difference (with 4 particles, where the gradient is far
    # from zero; with 32, at alpha = 0, the bound is nearly tight and the gradient small),
    # and with 32 particles the doubly reparameterised gradient has the smaller spread (the
    # point of it: Tucker et al. 2019; 0.007 against 0.35 for m at alpha = 0).
    from numpyro.infer import RenyiELBO

    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    z, model, guide, exact = _normal_mean_problem()
    params = {"m": exact["m"] + 0.3, "log_s": exact["log_s"] + np.log(1.5)}
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    for n_particles in (4, 32):
        ours_elbo = OrderedTraceELBO(num_particles=n_particles, alpha=alpha)
        ours = _gradients(ours_elbo, params, keys, model, guide, z)
        plain = _gradients(RenyiELBO(alpha=alpha, num_particles=n_particles), params, keys, model, guide, z)
        for name in params:
            a, b = np.asarray(ours[name]), np.asarray(plain[name])
            se = np.sqrt(a.var() / len(a) + b.var() / len(b))
            assert abs(a.mean() - b.mean()) < 4 * se, (n_particles, name, a.mean(), b.mean(), se)
            assert n_particles < 32 or a.std() < 0.5 * b.std(), (name, a.std(), b.std())


# Mean-field and low-rank are slow-marked to keep the default suite short (about 25 s each):
# full-rank is the guide the importance-weighted bound is recommended with.
@pytest.mark.parametrize(
    "guide",
    [
        pytest.param("meanfield", marks=pytest.mark.slow),
        "fullrank",
        pytest.param("lowrank", marks=pytest.mark.slow),
    ],
)
def test_doubly_reparameterised_gradient_is_unbiased_for_every_guide(guide):
    # On the mixture model itself, through each guide's transforms to the constrained sites
    # (simplex, Cholesky factors, scales): the mean gradient matches numpyro's RenyiELBO's
    # within 4.5 standard errors of their difference, for every guide parameter.
    from numpyro.infer import RenyiELBO

    from bayesgmm.inference.svi.config import make_guide
    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    Z = simulated(40)
    model = partial(gmm_model, n_components=2, n_features=2, covariance_type="full")

    def gradients(keys):
        g = make_guide(guide, model, init_to_median, 0.3)
        svi = SVI(model, g, optax_to_numpyro(optax.adam(0.01)), OrderedTraceELBO())
        params = svi.get_params(svi.init(jax.random.PRNGKey(0), Z=Z))
        out = []
        for elbo in (OrderedTraceELBO(num_particles=4, alpha=0.5), RenyiELBO(alpha=0.5, num_particles=4)):
            grad = jax.grad(lambda p, k, elbo=elbo: elbo.loss(k, p, model, g, Z=Z))
            out.append(jax.vmap(lambda k, grad=grad: grad(params, k))(keys))
        return out

    n_keys = 1000
    ours, plain = jax.jit(gradients)(jax.random.split(jax.random.PRNGKey(2), n_keys))
    for name in ours:
        a, b = np.asarray(ours[name]).reshape(n_keys, -1), np.asarray(plain[name]).reshape(n_keys, -1)
        se = np.sqrt(a.var(0) / n_keys + b.var(0) / n_keys)
        assert np.all(np.abs(a.mean(0) - b.mean(0)) < 4.5 * se), name


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_doubly_reparameterised_gradient_vanishes_at_the_exact_posterior(alpha):
    # Every draw's log p - log q is the log evidence, whatever the draw: the pathwise
    # gradient is zero draw by draw, where the plain estimator's is only zero on average.
    from numpyro.infer import RenyiELBO

    from bayesgmm.inference.svi.objective import OrderedTraceELBO

    z, model, guide, exact = _normal_mean_problem()
    keys = jax.random.split(jax.random.PRNGKey(1), 50)
    ours = _gradients(OrderedTraceELBO(num_particles=8, alpha=alpha), exact, keys, model, guide, z)
    plain = _gradients(RenyiELBO(alpha=alpha, num_particles=8), exact, keys, model, guide, z)
    for name in exact:
        np.testing.assert_allclose(np.asarray(ours[name]), 0.0, atol=1e-12)
        assert np.abs(np.asarray(plain[name])).max() > 1e-3


def test_renyi_alpha_checks():
    X = simulated(100)
    with pytest.raises(ValueError, match="num_particles >= 2"):
        fit_svi(X, 2, renyi_alpha=0.0)
    with pytest.raises(ValueError, match="full-batch"):
        fit_svi(X, 2, renyi_alpha=0.0, num_particles=4, batch_size=50)
    with pytest.raises(ValueError, match="point mass"):
        fit_svi(X, 2, renyi_alpha=0.5, num_particles=4, guide="map")
    for bad in (-0.1, 1.5, float("nan"), "0"):
        with pytest.raises(ValueError, match="renyi_alpha"):
            fit_svi(X, 2, renyi_alpha=bad, num_particles=4)


class _RecordKeys(handlers.Messenger):
    """The distribution and key numpyro's seed handler gives each sample site, in order."""

    def __init__(self, fn):
        self.sites = []
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["kwargs"].get("rng_key") is not None:
            self.sites.append((msg["fn"], msg["kwargs"]["rng_key"]))


def _numpyro_noise(guide, key, Z):
    """The standard normal values numpyro's samplers draw for the guide seeded with ``key``."""
    recorder = _RecordKeys(handlers.seed(guide, key))
    recorder(Z=Z)
    parts = []
    for fn, site_key in recorder.sites:
        fn = fn.base_dist if isinstance(fn, dist.TransformedDistribution) else fn
        base = fn.base_dist if isinstance(fn, dist.Independent) else fn
        if isinstance(base, dist.LowRankMultivariateNormal):
            key_W, key_D = jax.random.split(site_key)
            parts += [jax.random.normal(key_W, base.batch_shape + base.cov_factor.shape[-1:])]
            parts += [jax.random.normal(key_D, base.batch_shape + base.cov_diag.shape[-1:])]
        elif isinstance(base, dist.Normal | dist.MultivariateNormal):
            parts.append(jax.random.normal(site_key, base.batch_shape + base.event_shape))
    return jax.numpy.concatenate([p.ravel() for p in parts])


@pytest.mark.parametrize("guide", ["meanfield", "fullrank", "lowrank"])
def test_guide_noise_reproduces_numpyro_draws(guide):
    # Fed the very values numpyro's samplers would draw from the guide's keys, the ELBO with
    # given noise (as the chunk program runs it) is numpyro's Trace_ELBO, particles included.
    from bayesgmm.inference.svi.config import make_guide
    from bayesgmm.inference.svi.objective import NOISE, GuideNoise, OrderedTraceELBO, guide_noise_size

    def losses(model, n_particles, key, Z):
        g = make_guide(guide, model, init_to_median, 0.3)
        svi = SVI(model, g, optax_to_numpyro(optax.adam(0.01)), OrderedTraceELBO())
        params = svi.get_params(svi.init(jax.random.PRNGKey(0), Z=Z))
        keys = jax.random.split(key, n_particles) if n_particles > 1 else key[None]
        guided = handlers.substitute(g, data=params)
        noise = jax.numpy.stack([_numpyro_noise(guided, jax.random.split(k)[1], Z) for k in keys])
        assert noise.shape[1] == guide_noise_size(g, Z=Z)
        eps = noise if n_particles > 1 else noise[0]
        ours = OrderedTraceELBO(num_particles=n_particles).loss(key, params, model, g, Z=Z, **{NOISE: eps})
        # The draws themselves, site by site.
        fed = handlers.trace(GuideNoise(handlers.seed(guided, 0), noise[0])).get_trace(Z=Z)
        seeded = handlers.trace(handlers.seed(guided, jax.random.split(keys[0])[1])).get_trace(Z=Z)
        draws = [(fed[k]["value"], seeded[k]["value"]) for k in seeded if seeded[k]["type"] == "sample"]
        return ours, Trace_ELBO(num_particles=n_particles).loss(key, params, model, g, Z=Z), draws

    Z = simulated(200)
    model = partial(gmm_model, n_components=2, n_features=2, covariance_type="full")
    minibatch = partial(model, n_obs=1000, subsample_size=200)
    for m, n_particles in ((model, 1), (minibatch, 3)):
        ours, numpyro_loss, draws = jax.jit(partial(losses, m, n_particles))(jax.random.PRNGKey(5), Z)
        np.testing.assert_allclose(ours, numpyro_loss, rtol=1e-12)
        for fed, seeded in draws:
            np.testing.assert_allclose(fed, seeded, rtol=1e-12, atol=1e-14)


def test_svi_programs_are_compiled_with_bayesgmm_options(monkeypatch):
    # The step program goes through bayesgmm._jit: an option XLA does not know reaches the
    # compiler and fails there, so the real options reach it too.
    from jax.errors import JaxRuntimeError
    from numpyro.infer.autoguide import AutoDelta

    from bayesgmm import _jit
    from bayesgmm.inference.svi.program import TracingSVI, _chunk_runner

    def model(Z):
        mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
        with numpyro.plate("obs", Z.shape[0]):
            numpyro.sample("z", dist.Normal(mu, 1.0), obs=Z)

    def make():
        return SVI(model, AutoDelta(model), optax_to_numpyro(optax.adam(0.1)), Trace_ELBO())

    Z = jax.numpy.zeros(4)
    states = jax.tree_util.tree_map(lambda a: a[None], make().init(jax.random.PRNGKey(0), Z=Z))
    monkeypatch.setattr(_jit, "COMPILER_OPTIONS", {"xla_no_such_option_bayesgmm": True})
    with pytest.raises(JaxRuntimeError, match="xla_no_such_option_bayesgmm"):
        _chunk_runner(TracingSVI(make), 2, "full")(states, Z, None, jax.random.PRNGKey(1), 2)
    monkeypatch.undo()
    _, losses, _ = _chunk_runner(TracingSVI(make), 2, "full")(states, Z, None, jax.random.PRNGKey(1), 2)
    assert np.isfinite(np.asarray(losses)).all()


_COMPILE_AHEAD = """
import json, logging, sys
import jax, numpy as np
from bayesgmm import fit_svi

compiled = []

class Record(logging.Handler):
    def emit(self, record):
        message = record.getMessage()
        if message.startswith("Finished XLA compilation of jit("):
            compiled.append(message.split("(")[1].split(")")[0])

logger = logging.getLogger("jax")
logger.addHandler(Record(level=logging.DEBUG))
logger.setLevel(logging.DEBUG)
# The threads' compiles are logged only with the global setting (contexts are per thread).
jax.config.update("jax_log_compiles", True)
rng = np.random.default_rng(0)
Z = rng.normal(size=(300, 5))
Z[rng.random(300) < 0.4, :2] += (3.0, -1.0)
runs = {}
# Padded EM start rows 64, 32 and 256: each configuration compiles programs of its own.
for dtype, batch_size, stream, init_rows in [
    ("float64", None, False, 37), ("float32", 64, False, 20), ("float64", 64, True, 200)
]:
    X = (lambda: iter([Z[:150], Z[150:]])) if stream else Z
    kwargs = dict(guide="meanfield", dtype=dtype, batch_size=batch_size, chunk_size=13, max_steps=26)
    kwargs.update(num_samples=17, log_likelihood=False, init_rows=init_rows)
    del compiled[:]
    fit_svi(X, 2, seed=0, **kwargs)
    first = list(compiled)
    fit_svi(X, 2, seed=1, **kwargs)
    runs[f"{dtype}-{batch_size}-{stream}"] = [first, compiled[len(first):]]
print(json.dumps(runs))
"""


def test_programs_compiled_ahead_are_the_ones_called():
    # compile_ahead compiles the guide start, chunk and draw programs in other threads from
    # shapes and types alone, and compile_em_start the EM start's; each must be the program
    # the fit then calls, or it would be compiled twice. Two fits per configuration: every
    # program is compiled once, in the first. In a fresh process, where no other test can
    # have compiled one of them before (the EM start's program is shared by every EM fit).
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _COMPILE_AHEAD], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    runs = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(runs) == 3
    programs = ("batched", "_initial_states", "draw", "_fit_program")
    for config, (first, second) in runs.items():
        assert all(first.count(name) == 1 for name in programs), (config, first)
        assert not set(second) & set(programs), (config, second)


def test_guide_noise_refuses_too_little_noise():
    from bayesgmm.inference.svi.objective import GuideNoise

    def guide():
        numpyro.sample("x", dist.Normal(jax.numpy.zeros(3), 1.0).to_event(1))

    with pytest.raises(ValueError, match="more than the 2 noise values"):
        GuideNoise(guide, jax.numpy.zeros(2))()


_LOWER_ELBO = """
import hashlib, jax, numpy as np, optax
from functools import partial
from numpyro.infer import SVI
from numpyro.infer.initialization import init_to_median
from numpyro.optim import optax_to_numpyro
import bayesgmm
from bayesgmm.inference.svi.objective import OrderedTraceELBO
from bayesgmm.inference.svi.config import make_guide
from bayesgmm.models import gmm_model
model = partial(gmm_model, n_components=3, n_features=2, covariance_type="full")

def step(Z):
    guide = make_guide("meanfield", model, init_to_median, 0.1)
    svi = SVI(model, guide, optax_to_numpyro(optax.adam(0.01)), OrderedTraceELBO())
    return svi.update(svi.init(jax.random.PRNGKey(0), Z=Z), Z=Z)

text = jax.jit(step).lower(np.zeros((5, 2))).as_text(debug_info=False)
print(hashlib.sha256(text.encode()).hexdigest())
"""


def test_svi_step_program_is_the_same_in_every_process():
    # JAX's persistent compilation cache finds a program by its text: with numpyro's
    # Trace_ELBO it changed with the hash seed, and every new process recompiled.
    import os
    import subprocess
    import sys

    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", _LOWER_ELBO], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip().splitlines()[-1])
    assert len(digests) == 1


def test_float32_fit_agrees_with_float64_and_skips_log_likelihood(sim_fits):
    X = simulated()
    fit32 = fit_svi(X, 2, guide="meanfield", seed=2, dtype=np.float32, log_likelihood=False)
    assert fit32.attrs["dtype"] == "float32"
    assert "log_likelihood" not in fit32.groups() and "sample_stats" not in fit32.groups()
    assert np.isfinite(fit32.elbo_trace["elbo"].values).all()
    # Same guide, seed and data as the float64 fit: float32 rounding and Adam's jitter move the
    # variational means by far less than the 0.5 NUTS sd allowed against NUTS itself.
    nuts_sd = means_draws(sim_fits["nuts"]).std(0)
    m32, m64 = means_draws(fit32), means_draws(sim_fits["meanfield"])
    assert np.all(np.abs(m32.mean(0) - m64.mean(0)) < 0.25 * nuts_sd)
    np.testing.assert_allclose(m32.std(0), m64.std(0), rtol=0.2)


def test_sparse_meanfield_fit_has_importance_weights():
    # The sparse prior's weights are deterministic: the guide has no parameters for them.
    X = np.concatenate([np.random.default_rng(0).normal(m, 1.0, 30) for m in (0.0, 8.0)])[:, None]
    idata = fit_svi(X, 3, weight_prior="sparse", guide="meanfield", num_samples=50, seed=0)
    assert np.isfinite(idata.sample_stats["log_q"]).all()
    np.testing.assert_allclose(idata.posterior["weights"].sum("component"), 1.0)


def test_num_restarts_is_a_deprecated_alias_of_n_init():
    X, _ = load_dataset("faithful")
    kwargs = dict(guide="map", keep="chains", seed=0, max_steps=200, log_likelihood=False)
    with pytest.warns(FutureWarning, match="n_init"):
        old = fit_svi(X, 2, num_restarts=2, **kwargs)
    new = fit_svi(X, 2, n_init=2, **kwargs)
    np.testing.assert_array_equal(old.posterior["means"].values, new.posterior["means"].values)
    assert old.posterior.sizes["chain"] == 2


def test_program_cache_is_bounded_and_keyed_on_the_optimizer():
    from bayesgmm.inference.svi.cache import ProgramCache

    cache, built = ProgramCache(maxsize=2), []
    adam, sgd = optax.adam(0.1), optax.sgd(0.1)
    for key in [("a", adam), ("a", adam), ("a", sgd), ("b", adam), ("a", adam)]:
        cache.get(key, lambda key=key: built.append(key) or key)
    # ("a", adam) is built once, then evicted by the two others and built again.
    assert built == [("a", adam), ("a", sgd), ("b", adam), ("a", adam)] and len(cache) == 2


def test_fit_compiled_on_the_calling_thread_is_the_fit_compiled_in_threads(monkeypatch):
    """``BAYESGMM_COMPILE_THREADS=0`` changes where programs compile, never what a fit returns."""
    X = simulated(n_obs=120)
    kwargs = dict(guide="meanfield", max_steps=40, chunk_size=20, num_samples=10, seed=3)
    monkeypatch.setenv("BAYESGMM_COMPILE_THREADS", "0")
    serial = fit_svi(X, 2, **kwargs)
    monkeypatch.setenv("BAYESGMM_COMPILE_THREADS", "2")
    threaded = fit_svi(X, 2, **kwargs)
    np.testing.assert_array_equal(serial.posterior["means"].values, threaded.posterior["means"].values)
    monkeypatch.setenv("BAYESGMM_COMPILE_THREADS", "two")
    with pytest.raises(ValueError, match="BAYESGMM_COMPILE_THREADS must be a whole number"):
        fit_svi(X, 2, **kwargs)
