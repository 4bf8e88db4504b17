"""One parameter set of a Gaussian mixture: the currency of all the math."""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from numpy.typing import ArrayLike


class GMMParams(NamedTuple):
    """Parameters of a Gaussian mixture with full covariance factors.

    Every covariance type is stored as a full lower-triangular Cholesky factor
    so that one set of densities serves them all; ``diag``, ``spherical`` and
    ``tied`` only constrain what the factor may look like.

    Attributes
    ----------
    weights : array, shape (n_components,)
        Mixing weights, non-negative and summing to one.
    means : array, shape (n_components, n_features)
        Component means.
    scale_tril : array, shape (n_components, n_features, n_features)
        Lower-triangular Cholesky factors ``L`` with ``covariance = L @ L.T``.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> p = GMMParams(jnp.array([0.5, 0.5]), jnp.zeros((2, 1)), jnp.ones((2, 1, 1)))
    >>> p.n_components, p.n_features
    (2, 1)
    """

    weights: jnp.ndarray
    means: jnp.ndarray
    scale_tril: jnp.ndarray

    @property
    def n_components(self) -> int:
        """Number of mixture components."""
        return self.means.shape[-2]

    @property
    def n_features(self) -> int:
        """Number of features."""
        return self.means.shape[-1]

    @property
    def covariances(self) -> jnp.ndarray:
        """Covariance matrices, shape (n_components, n_features, n_features)."""
        return self.scale_tril @ jnp.swapaxes(self.scale_tril, -1, -2)

    @classmethod
    def from_covariances(cls, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike) -> GMMParams:
        """Build from covariance matrices, shape (n_components, n_features, n_features)."""
        return cls(jnp.asarray(weights), jnp.asarray(means), jnp.linalg.cholesky(jnp.asarray(covariances)))

    def permute(self, perm: ArrayLike) -> GMMParams:
        """Reorder the components: component ``k`` of the result is ``perm[k]`` of this one."""
        perm = jnp.asarray(perm)
        return GMMParams(self.weights[..., perm], self.means[..., perm, :], self.scale_tril[..., perm, :, :])

    def unstandardize(self, loc: ArrayLike, scale: ArrayLike) -> GMMParams:
        """Map parameters fitted to ``(X - loc) / scale`` back to the units of ``X``.

        ``loc`` and ``scale`` have shape (n_features,).
        """
        loc = jnp.asarray(loc)
        scale = jnp.asarray(scale)
        return GMMParams(
            self.weights,
            loc + self.means * scale,
            scale[:, None] * self.scale_tril,
        )
