"""mclust's fourteen covariance models for EM: names, parameter counts and M-steps.

Each component's covariance is written ``Sigma_k = lambda_k D_k A_k D_k^T`` (Celeux &
Govaert 1995): volume ``lambda_k = det(Sigma_k)^(1/D)``, shape ``A_k`` (diagonal, unit
determinant) and orientation ``D_k`` (orthogonal). A model's name says, letter by letter,
whether volume, shape and orientation are Equal across components, Variable, or the
Identity (``I``: a spherical shape, or the axes as orientation). scikit-learn's four types are
four of them: ``spherical`` is ``VII``, ``diag`` ``VVI``, ``tied`` ``EEE`` and ``full`` ``VVV``;
``fit_em`` runs those by their own fast paths.

The others share ``full``'s statistics and E-step; their M-step maps each component's count
``n_k`` and scatter matrix ``W_k = sum_i r_ik (x_i - mean_k)(x_i - mean_k)^T`` to the
covariances maximising ``Q = -1/2 sum_k [n_k log det(Sigma_k) + tr(W_k Sigma_k^{-1})]`` under
the model's constraint. Seven have closed forms (Celeux & Govaert 1995). VEI, VEE and VEV
alternate between the common shape (and orientation) and the volumes; EVE and VVE alternate
between the shapes and the common orientation (Browne & McNicholas 2014), which here takes a
sweep of exact plane rotations (Flury 1984) in place of their majorise-minimise step, for it
converges in far fewer steps. Each alternation, started from the previous EM iteration's covariances,
never decreases ``Q``, so EM with a few of them per iteration is an ECM algorithm and still
never decreases the likelihood (Meng & Rubin 1993).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: mclust's model names, in mclust's order.
MCLUST_MODELS = (
    "EII",
    "VII",
    "EEI",
    "VEI",
    "EVI",
    "VVI",
    "EEE",
    "VEE",
    "EVE",
    "VVE",
    "EEV",
    "VEV",
    "EVV",
    "VVV",
)
#: The mclust models scikit-learn has, by scikit-learn's name.
SKLEARN_NAMES = {"VII": "spherical", "VVI": "diag", "EEE": "tied", "VVV": "full"}
#: Every ``covariance_type`` of the EM path.
EM_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical", *MCLUST_MODELS)

_MAX_INNER = 100  # alternations per M-step, enough to converge from the previous iteration's
_INNER_RTOL = 1e-10


def check_em_covariance_type(
    covariance_type: str, prior: object = None, missing: str = "error", noise: str | None = None
) -> str:
    """Check an EM ``covariance_type`` and return the name its program runs under.

    scikit-learn's names and their mclust aliases (``VII``, ``VVI``, ``EEE``, ``VVV``) give
    scikit-learn's name; the other mclust names are returned as they are.

    Parameters
    ----------
    covariance_type : str
    prior : object
        ``fit_em``'s ``prior``: MAP-EM has scikit-learn's four types only.
    missing : str
        ``fit_em``'s ``missing``: EM for incomplete data has scikit-learn's four types only.
    noise : str or None
        ``fit_em``'s ``noise``: EM with a noise component has scikit-learn's four types only.

    Returns
    -------
    str

    Examples
    --------
    >>> check_em_covariance_type("EEE"), check_em_covariance_type("VEV")
    ('tied', 'VEV')
    """
    if not isinstance(covariance_type, str) or covariance_type not in EM_COVARIANCE_TYPES:
        raise ValueError(
            f"covariance_type must be one of {EM_COVARIANCE_TYPES} (scikit-learn's or mclust's "
            f"names), got {covariance_type!r}."
        )
    options = (
        ("prior (MAP-EM)", prior is not None),
        ("missing='marginalize'", missing != "error"),
        (f"noise={noise!r}", noise is not None),
    )
    for what, used in options:
        if used and is_mclust_only(covariance_type):
            raise ValueError(
                f"{what} takes scikit-learn's four covariance types (or VII, VVI, EEE, VVV), got "
                f"covariance_type={covariance_type!r}; drop {what.split()[0]} or use 'full'."
            )
    return SKLEARN_NAMES.get(covariance_type, covariance_type)


def is_mclust_only(covariance_type: str) -> bool:
    """Tell whether ``covariance_type`` is an mclust model outside scikit-learn's four."""
    return covariance_type in MCLUST_MODELS and covariance_type not in SKLEARN_NAMES


def sklearn_layout(covariance_type: str) -> str:
    """Return the scikit-learn type whose statistics, E-step and array shapes ``covariance_type`` uses.

    Examples
    --------
    >>> sklearn_layout("VVI"), sklearn_layout("EVE"), sklearn_layout("tied")
    ('diag', 'full', 'tied')
    """
    return "full" if is_mclust_only(covariance_type) else SKLEARN_NAMES.get(covariance_type, covariance_type)


def n_covariance_parameters(covariance_type: str, n_components: int, n_features: int) -> int:
    """Count the free covariance parameters as mclust's ``nVarParams`` does.

    Parameters
    ----------
    covariance_type : str
        scikit-learn's or mclust's name.
    n_components, n_features : int

    Returns
    -------
    int

    Examples
    --------
    >>> n_covariance_parameters("VEV", 3, 2)  # 3 volumes, 1 shape, 3 angles
    7
    """
    name = {v: k for k, v in SKLEARN_NAMES.items()}.get(covariance_type, covariance_type)
    K, d = n_components, n_features
    # Volumes, shapes and orientations: equal ones count once, variable ones K times.
    volume = {"E": 1, "V": K}[name[0]]
    shape = {"I": 0, "E": d - 1, "V": K * (d - 1)}[name[1]]
    orientation = {"I": 0, "E": d * (d - 1) // 2, "V": K * d * (d - 1) // 2}[name[2]]
    return volume + shape + orientation


def _root_det(M):
    """``det(M)^(1/D)`` of positive definite matrices (..., D, D)."""
    return jnp.exp(jnp.linalg.slogdet(M)[1] / M.shape[-1])


def _root_prod(v):
    """``prod(v)^(1/D)`` of positive vectors (..., D)."""
    return jnp.exp(jnp.mean(jnp.log(v), axis=-1))


def _diag_part(W):
    return jnp.diagonal(W, axis1=-2, axis2=-1)


def _iterate(update, x0):
    """Apply ``update`` until ``x`` changes by ``_INNER_RTOL`` relative, at most ``_MAX_INNER`` times."""

    def cond(c):
        x, change, i = c
        return (change > _INNER_RTOL) & (i < _MAX_INNER)

    def body(c):
        x, _, i = c
        new = update(x)
        return new, jnp.max(jnp.abs(new - x)) / jnp.maximum(jnp.max(jnp.abs(x)), 1e-300), i + 1

    return jax.lax.while_loop(cond, body, (update(x0), jnp.asarray(jnp.inf, x0.dtype), 1))[0]


def _closed_form(name, nk, W):
    """Compute the seven closed-form M-steps (Celeux & Govaert 1995, Table 1)."""
    d = W.shape[-1]
    n = jnp.sum(nk)
    eye = jnp.eye(d, dtype=W.dtype)
    if name == "EII":
        return jnp.broadcast_to(jnp.trace(jnp.sum(W, 0)) / (n * d) * eye, W.shape)
    if name == "VII":
        return (jnp.trace(W, axis1=-2, axis2=-1) / (nk * d))[:, None, None] * eye
    if name == "EEI":
        return jnp.broadcast_to(jnp.diag(_diag_part(jnp.sum(W, 0)) / n), W.shape)
    if name == "VVI":
        return jax.vmap(jnp.diag)(_diag_part(W) / nk[:, None])
    if name == "EVI":
        w = _diag_part(W)
        root = _root_prod(w)
        return jax.vmap(jnp.diag)(w / root[:, None] * (jnp.sum(root) / n))
    if name == "EEE":
        return jnp.broadcast_to(jnp.sum(W, 0) / n, W.shape)
    if name == "EEV":
        # Equal eigenvalues, each component's own eigenvectors: the sorted eigenvalues add up.
        omega, L = _eigh_descending(W)
        return _rotate(L, jnp.broadcast_to(jnp.sum(omega, 0) / n, omega.shape))
    if name == "EVV":
        root = _root_det(W)
        return W / root[:, None, None] * (jnp.sum(root) / n)
    return W / nk[:, None, None]  # VVV


def _eigh_descending(W):
    omega, L = jnp.linalg.eigh(W)
    return omega[..., ::-1], L[..., ::-1]


def _rotate(L, b):
    """``L_k diag(b_k) L_k^T``: (K, D, D)."""
    return jnp.einsum("kij,kj,klj->kil", L, b, L)


def _volumes_and_shape(name, nk, W, volume0):
    """VEI, VEE, VEV: alternate the common shape (and orientation) and the volumes ``lambda_k``."""
    d = W.shape[-1]
    if name == "VEV":
        omega, L = _eigh_descending(W)

    def shape_given(lam):
        if name == "VEI":
            a = jnp.sum(_diag_part(W) / lam[:, None], 0)
            return a / _root_prod(a)
        if name == "VEV":
            a = jnp.sum(omega / lam[:, None], 0)
            return a / _root_prod(a)
        C = jnp.sum(W / lam[:, None, None], 0)
        return C / _root_det(C)

    def volumes_given(shape):
        if name == "VEI":
            return jnp.sum(_diag_part(W) / shape, -1) / (nk * d)
        if name == "VEV":
            return jnp.sum(omega / shape, -1) / (nk * d)
        return jnp.trace(jnp.linalg.solve(shape, W), axis1=-2, axis2=-1) / (nk * d)

    lam = _iterate(lambda lam: volumes_given(shape_given(lam)), volume0)
    shape = shape_given(lam)
    if name == "VEI":
        return jax.vmap(jnp.diag)(lam[:, None] * shape)
    if name == "VEV":
        return _rotate(L, lam[:, None] * shape)
    return lam[:, None, None] * shape


def _orientation_step(W, D, p):
    """One sweep of plane rotations decreasing ``sum_k tr(W_k D diag(p_k) D^T)`` over orthogonal ``D``.

    Rotating columns ``i, j`` of ``D`` by ``t`` changes the objective by
    ``A cos 2t + B sin 2t`` plus a constant, ``A = 1/2 sum_k (p_ki - p_kj)(a_k - b_k)`` and
    ``B = sum_k (p_ki - p_kj) c_k`` (``a, b, c`` the entries of the columns' 2 x 2 block of
    ``D^T W_k D``), so each rotation is an exact minimisation in its plane, as in Flury's
    (1984) algorithm for common principal components; a sweep never increases the objective.
    """
    rows, cols = jnp.triu_indices(D.shape[-1], 1)

    def rotate(m, D):
        i, j = rows[m], cols[m]
        di, dj = D[:, i], D[:, j]
        a, b, c = (jnp.einsum("i,kij,j->k", x, W, y) for x, y in ((di, di), (dj, dj), (di, dj)))
        dp = p[:, i] - p[:, j]
        t = 0.5 * jnp.arctan2(-jnp.sum(dp * c), -0.5 * jnp.sum(dp * (a - b)))
        cos, sin = jnp.cos(t), jnp.sin(t)
        return D.at[:, i].set(cos * di + sin * dj).at[:, j].set(cos * dj - sin * di)

    return jax.lax.fori_loop(0, rows.shape[0], rotate, D)


def _common_orientation(name, nk, W, D0):
    """EVE, VVE: alternate each component's shape (and volume) and the common orientation ``D``."""
    n = jnp.sum(nk)

    def eigenvalues_given(D):
        w = jnp.einsum("ji,kjl,li->ki", D, W, D)  # diag(D^T W_k D)
        if name == "VVE":
            return w / nk[:, None]
        root = _root_prod(w)
        return w / root[:, None] * (jnp.sum(root) / n)

    def update(D):
        return _orientation_step(W, D, 1.0 / eigenvalues_given(D))

    D = _iterate(update, D0)
    b = eigenvalues_given(D)
    return jnp.einsum("ij,kj,lj->kil", D, b, D)


def mclust_covariances(
    covariance_type: str, nk: jnp.ndarray, W: jnp.ndarray, previous: jnp.ndarray | None = None
) -> jnp.ndarray:
    """Compute the M-step's covariances of an mclust model from counts and scatter matrices.

    Parameters
    ----------
    covariance_type : str
        An mclust name (scikit-learn's four are ``VII``, ``VVI``, ``EEE``, ``VVV`` here).
    nk : array, shape (n_components,)
        Responsibility-weighted counts.
    W : array, shape (n_components, n_features, n_features)
        Scatter matrices about each component's mean, ``sum_i r_ik (x_i - m_k)(x_i - m_k)^T``.
    previous : array, shape (n_components, n_features, n_features), optional
        The previous iteration's covariances, where the iterative models start their
        alternations (so that ``Q`` cannot decrease); without them, a start from ``W``.

    Returns
    -------
    array, shape (n_components, n_features, n_features)
        Covariances with the model's constraint, maximising ``Q`` (the iterative models: not
        below ``Q`` at ``previous``).

    Examples
    --------
    >>> import numpy as np
    >>> W = np.array([[[2.0, 0.5], [0.5, 1.0]], [[4.0, 0.0], [0.0, 1.0]]])
    >>> cov = mclust_covariances("VEI", np.array([2.0, 2.0]), W)
    >>> ratio = np.diagonal(cov[0]) / np.diagonal(cov[1])  # equal shapes: a constant ratio
    >>> bool(np.isclose(ratio[0], ratio[1])), float(cov[0, 0, 1])
    (True, 0.0)
    >>> cov = mclust_covariances("EVV", np.array([2.0, 2.0]), W)  # equal volumes: equal determinants
    >>> np.round(np.linalg.det(cov), 4).tolist()
    [0.6901, 0.6901]
    """
    if covariance_type in ("VEI", "VEE", "VEV"):
        start = W / nk[:, None, None] if previous is None else previous
        return _volumes_and_shape(covariance_type, nk, W, _root_det(start))
    if covariance_type in ("EVE", "VVE"):
        start = jnp.sum(W, 0) if previous is None else jnp.sum(previous, 0)
        return _common_orientation(covariance_type, nk, W, jnp.linalg.eigh(start)[1])
    return _closed_form(covariance_type, nk, W)
