"""The ELBO loss for SVI, with the same traced program in every process.

numpyro's ``Trace_ELBO`` sums ``log p - log q`` over a Python ``set`` of site names.
A set of strings iterates in an order fixed by the process's hash seed, so the traced
program changes from one Python process to the next: JAX's persistent compilation
cache then never finds it (the chunk program is recompiled in every new process) and the
loss differs between processes in its last bits. This loss is
the same quantity, with the sites summed in the order the model and guide visit them.

With ``alpha`` below 1 it is the Rényi bound of Li & Turner (2016) instead, which at
``alpha=0`` is the importance-weighted bound of Burda et al. (2016): its optimum guide
covers more of the posterior's mass than the ELBO's, which is what a small data set's
non-Gaussian posterior needs (see ``fit_svi``'s ``renyi_alpha``).

It also takes the guide's standard normal noise as an argument (``NOISE``), so that
the compiled chunk of steps draws the noise of all its steps at once, outside its loop
(see ``GuideNoise``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.handlers import replay, seed
from numpyro.infer.elbo import ELBO
from numpyro.infer.util import log_density
from numpyro.primitives import Messenger

#: Keyword argument of ``OrderedTraceELBO.loss`` (and so of ``SVI.update``) carrying the
#: guide's noise: shape (n_noise,), or (num_particles, n_noise); see ``guide_noise_size``.
NOISE = "guide_noise"


class OrderedTraceELBO(ELBO):
    """``numpyro.infer.Trace_ELBO`` (or ``RenyiELBO``) with a deterministic order of summation.

    For models without mutable state and with one guide draw per particle (all of
    bayesgmm's). With the same key it draws exactly what ``Trace_ELBO`` draws. Given the
    keyword argument ``NOISE`` (shape (n_noise,), or (num_particles, n_noise)), the guide's
    reparameterised sites take that noise (``GuideNoise``) instead of drawing it from
    their keys; model and guide never see the argument.

    Parameters
    ----------
    num_particles : int
        Monte Carlo draws per loss evaluation.
    alpha : float in [0, 1], default 1.0
        Order of the Rényi divergence. 1 averages the particles' ``log p - log q`` (the
        ELBO); below 1 the loss is ``-(logsumexp((1 - alpha) * w) - log K) / (1 - alpha)``
        over the ``K = num_particles`` particles' ``w = log p - log q``, as numpyro's
        ``RenyiELBO`` computes it (``alpha=0``: the importance-weighted bound). Then the
        bound tightens as ``num_particles`` grows; with one particle it is the ELBO. Its
        gradient is the doubly reparameterised one (Tucker et al. 2019): the signal-to-noise
        ratio of numpyro's ``RenyiELBO`` gradient for the guide falls as ``num_particles``
        grows (Rainforth et al. 2018), this one's does not.

    Examples
    --------
    >>> loss = OrderedTraceELBO(num_particles=2, alpha=0.0)
    >>> loss.num_particles, loss.alpha
    (2, 0.0)
    """

    def __init__(self, num_particles: int = 1, alpha: float = 1.0):
        # Above 1 the Rényi objective is no longer a lower bound on the evidence.
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}.")
        super().__init__(num_particles=num_particles)
        self.alpha = float(alpha)

    def loss_with_mutable_state(
        self,
        rng_key: jax.Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args: Any,
        **kwargs: Any,
    ) -> dict:
        """Return ``{"loss": negative bound, "mutable_state": None}`` (see ``numpyro.infer.ELBO``).

        ``kwargs`` may hold the guide's noise under ``NOISE``; the rest go to model and guide.
        """
        noise = kwargs.pop(NOISE, None)
        renyi = self.alpha < 1.0 and self.num_particles > 1

        def particle(key, eps):
            model_seed, guide_seed = jax.random.split(key)
            seeded = seed(guide, guide_seed)
            seeded = seeded if eps is None else GuideNoise(seeded, eps)
            guide_lp, guide_trace = log_density(seeded, args, kwargs, param_map)
            model_lp, _ = log_density(replay(seed(model, model_seed), guide_trace), args, kwargs, param_map)
            if not renyi:
                return model_lp - guide_lp, None
            # The guide's density at the same draws with its parameters held fixed: its
            # gradient flows only through the draws (see the doubly reparameterised loss).
            frozen = jax.lax.stop_gradient(param_map)
            replayed = replay(seed(guide, guide_seed), guide_trace)
            guide_lp_frozen, _ = log_density(replayed, args, kwargs, frozen)
            return model_lp - guide_lp, model_lp - guide_lp_frozen

        if not renyi:
            if self.num_particles == 1:
                return {"loss": -particle(rng_key, noise)[0], "mutable_state": None}
            w, _ = jax.vmap(particle)(jax.random.split(rng_key, self.num_particles), noise)
            return {"loss": -jnp.mean(w), "mutable_state": None}
        w, w_through_draws = jax.vmap(particle)(jax.random.split(rng_key, self.num_particles), noise)
        scaled = (1.0 - self.alpha) * w
        bound = (jax.nn.logsumexp(scaled) - jnp.log(self.num_particles)) / (1.0 - self.alpha)
        # Doubly reparameterised gradient (Tucker et al. 2019, DReG): the score-function part
        # of the reparameterised gradient, which swamps it as particles are added, is
        # replaced by its expectation rewritten as a pathwise derivative. With normalised
        # weights v = softmax((1 - alpha) w) the gradient is
        # sum_k (alpha v_k + (1 - alpha) v_k^2) d w_k / d z_k  d z_k / d params
        # (v^2 at alpha = 0, Tucker et al.'s IWAE case). Unbiased for the bound's gradient;
        # zero for every draw when the guide is the posterior. The loss's value is the bound.
        v = jax.lax.stop_gradient(jax.nn.softmax(scaled))
        surrogate = jnp.sum((self.alpha * v + (1.0 - self.alpha) * v**2) * w_through_draws)
        loss = -(jax.lax.stop_gradient(bound) + surrogate - jax.lax.stop_gradient(surrogate))
        return {"loss": loss, "mutable_state": None}


class GuideNoise(Messenger):
    """Draw the guide's reparameterised sites from given standard normal noise.

    Each sample site of a ``Normal``, ``MultivariateNormal`` or
    ``LowRankMultivariateNormal`` (possibly ``Independent`` and transformed, as numpyro's
    autoguides sample them) takes the next values of ``noise`` in the order the guide
    visits them, where numpyro would draw them from the site's key; its value and the
    transforms' intermediates are computed as numpyro's samplers compute them. Other sites
    are left to numpyro. With ``noise=None`` it only counts the values it would take
    (``offset``), feeding zeros.

    Why: a normal draw is a threefry hash and a float64 ``erf_inv`` polynomial, and XLA
    copies that chain into every fusion that reads the draw: in the chunk program (a
    ``lax.scan`` of steps) the copies can make up most of the optimised HLO and of its
    compile time. Noise drawn once for all the chunk's steps, outside the
    loop, reaches the steps as a plain input.

    Parameters
    ----------
    fn : callable
        The guide (seeded, for any site left to numpyro).
    noise : array, shape (n_noise,), optional

    Examples
    --------
    >>> import numpyro
    >>> def guide():
    ...     return numpyro.sample("x", dist.Normal(jnp.zeros(3), 2.0))
    >>> GuideNoise(guide, jnp.array([1.0, 2.0, 3.0]))().tolist()
    [2.0, 4.0, 6.0]
    """

    def __init__(self, fn: Callable | None = None, noise: jax.Array | None = None) -> None:
        self.noise, self.offset = noise, 0
        super().__init__(fn)

    def _take(self, shape, dtype):
        start, self.offset = self.offset, self.offset + math.prod(shape)
        if self.noise is None:
            return jnp.zeros(shape, dtype)
        if self.offset > self.noise.shape[-1]:
            raise ValueError(f"The guide needs more than the {self.noise.shape[-1]} noise values given.")
        return self.noise[start : self.offset].reshape(shape).astype(dtype)

    def process_message(self, msg: dict) -> None:
        """Set the value of a reparameterised sample site from the next noise values."""
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        fn, transforms = msg["fn"], []
        if isinstance(fn, dist.TransformedDistribution):
            fn, transforms = fn.base_dist, fn.transforms
        base = fn.base_dist if isinstance(fn, dist.Independent) else fn
        batch = tuple(msg["kwargs"].get("sample_shape", ())) + base.batch_shape
        if type(base) is dist.Normal:
            x = base.loc + self._take(batch, base.loc.dtype) * base.scale
        elif type(base) is dist.MultivariateNormal:
            eps = self._take(batch + base.event_shape, base.loc.dtype)
            x = base.loc + jnp.squeeze(jnp.matmul(base.scale_tril, eps[..., None]), axis=-1)
        elif type(base) is dist.LowRankMultivariateNormal:
            eps_W = self._take(batch + base.cov_factor.shape[-1:], base.loc.dtype)
            eps_D = self._take(batch + base.cov_diag.shape[-1:], base.loc.dtype)
            factor = jnp.squeeze(jnp.matmul(base.cov_factor, eps_W[..., None]), axis=-1)
            x = base.loc + factor + jnp.sqrt(base.cov_diag) * eps_D
        else:
            return
        intermediates = []
        for transform in transforms:
            x_before = x
            x, inter = transform.call_with_intermediates(x)
            intermediates.append([x_before, inter])
        msg["value"], msg["intermediates"] = x, intermediates


def guide_noise_size(guide: Callable, *args: Any, **kwargs: Any) -> int:
    """Return the number of standard normal values ``GuideNoise`` feeds ``guide`` per draw.

    Call inside a trace (the guide runs once, on zeros), with the guide's arguments.

    Examples
    --------
    >>> import numpyro
    >>> guide = lambda: numpyro.sample("x", dist.Normal(jnp.zeros((2, 3)), 1.0).to_event(1))
    >>> guide_noise_size(guide)
    6
    """
    counter = GuideNoise(seed(guide, 0))
    counter(*args, **kwargs)
    return counter.offset
