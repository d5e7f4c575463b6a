"""Power-law fits of a KL gap by scipy.optimize.least_squares, on arrays:

    one term:  kl(x)    = A * x**-alpha
    two terms: kl(N, D) = A * N**-alpha + B * D**-beta

No constant term: the gap is the loss minus the exact entropy of the process, so an unlimited model
with unlimited data has gap 0 and there is no irreducible part left to fit (a constant would only
soak up under-training, and is poorly determined by a handful of sizes).

Residuals are in log space, log(model) - log(kl): the seed spread of a gap grows with the gap
(multiplicative noise), and gaps span decades, so each point's relative error is what counts; in
linear space the largest gaps would decide the fit alone. A log residual also needs no scale, and
makes the one-term fit linear in (log A, alpha). Amplitudes are fitted as logs (so they stay
positive) of each term's value at the geometric centre of its axis (so the two are not correlated
through the exponent), and converted back to A and B.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.optimize import least_squares

NAMES = {1: ("A", "alpha"), 2: ("A", "alpha", "B", "beta")}
MIN_POINTS = 3
# Smallest singular value of the Jacobian, relative to its largest, below which a parameter is
# taken as not determined by the data (one term too small to matter anywhere, say).
RANK_TOLERANCE = 1e-7
STARTS = (0.2, 0.5, 1.0)  # starting exponents of the two-term fit, each against each


class FitError(ValueError):
    """A fit refused: too few distinct points for its parameters, or values it cannot take."""


class NotConvergedError(FitError):
    """least_squares stopped without converging, or left a parameter undetermined."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A fitted law: its parameters (A, alpha[, B, beta]) and the root mean square of its log
    residuals (0.03 ~ points 3% off the curve)."""

    params: dict[str, float]
    rms_log_residual: float
    evaluations: int

    def __call__(self, *x: np.ndarray) -> np.ndarray:
        return predict(self.params, *x)


def predict(params: dict[str, float], *x: np.ndarray) -> np.ndarray:
    """The law of `params` at x (one array per axis: N, or N and D)."""
    out = params["A"] * np.asarray(x[0], float) ** -params["alpha"]
    if len(x) > 1:
        out = out + params["B"] * np.asarray(x[1], float) ** -params["beta"]
    return out


def _check(x_AxP: np.ndarray, y_P: np.ndarray, axes: tuple[str, ...]) -> None:
    """Refuse what a log-space fit of len(axes) terms cannot honestly take."""
    n_params = 2 * len(axes)
    if not np.all(np.isfinite(x_AxP)) or not np.all(np.isfinite(y_P)):
        raise FitError("fit: every x and kl must be a finite number")
    for name, x_P in zip(axes, x_AxP):
        if np.any(x_P <= 0):
            raise FitError(f"fit: {name} must be positive, got {x_P.min():g}")
    if np.any(y_P <= 0):
        raise FitError(
            f"fit: {int((y_P <= 0).sum())} of {len(y_P)} kl values are <= 0 (smallest "
            f"{y_P.min():.3g}); a log-space fit needs positive gaps"
        )
    distinct = len({tuple(col) for col in x_AxP.T})
    need = max(MIN_POINTS, n_params + 1)
    if distinct < need:
        raise FitError(
            f"fit of {n_params} parameters over {', '.join(axes)}: {distinct} distinct point(s), "
            f"needs at least {need}"
        )
    if len(axes) > 1:
        for name, x_P in zip(axes, x_AxP):
            if len(set(x_P)) < MIN_POINTS:
                raise FitError(
                    f"two-term fit: {len(set(x_P))} distinct value(s) of {name}, needs at least "
                    f"{MIN_POINTS}"
                )


def _residuals(theta: np.ndarray, u_AxP: np.ndarray, logy_P: np.ndarray) -> np.ndarray:
    if len(u_AxP) == 1:
        return theta[0] - theta[1] * u_AxP[0] - logy_P
    t1 = theta[0] - theta[1] * u_AxP[0]
    t2 = theta[2] - theta[3] * u_AxP[1]
    return np.logaddexp(t1, t2) - logy_P


def _jacobian(theta: np.ndarray, u_AxP: np.ndarray, logy_P: np.ndarray) -> np.ndarray:
    if len(u_AxP) == 1:
        return np.stack([np.ones_like(u_AxP[0]), -u_AxP[0]], axis=1)
    t1 = theta[0] - theta[1] * u_AxP[0]
    t2 = theta[2] - theta[3] * u_AxP[1]
    w1 = np.exp(t1 - np.logaddexp(t1, t2))  # share of the first term in the sum
    w2 = 1 - w1
    return np.stack([w1, -u_AxP[0] * w1, w2, -u_AxP[1] * w2], axis=1)


def fit_law(
    x: np.ndarray | tuple[np.ndarray, ...],
    y: np.ndarray,
    axes: tuple[str, ...] = ("N",),
    start: dict[str, float] | None = None,
    max_evaluations: int = 2000,
) -> Estimate:
    """Least-squares fit of kl = A x^-alpha (one axis) or A N^-alpha + B D^-beta (two axes) to
    the points (x, y), log residuals. `start` (a previous fit's params) replaces the built-in
    starts (for the two-term form, each pair of STARTS exponents; the lowest cost wins).

    FitError when the points are too few (fewer distinct points than parameters + 1, or than 3;
    for two terms also fewer than 3 distinct values on either axis) or not positive;
    NotConvergedError when least_squares stops short or a parameter is left undetermined."""
    x_AxP = np.atleast_2d(np.asarray(x, float))
    y_P = np.asarray(y, float)
    if x_AxP.shape[0] not in NAMES or len(axes) != x_AxP.shape[0]:
        raise FitError(f"fit: one or two axes, named; got {x_AxP.shape[0]} and names {axes}")
    if x_AxP.shape[1] != len(y_P):
        raise FitError(f"fit: {x_AxP.shape[1]} x values but {len(y_P)} kl values")
    _check(x_AxP, y_P, axes)
    logx_AxP = np.log(x_AxP)
    centre_A = logx_AxP.mean(axis=1)
    u_AxP = logx_AxP - centre_A[:, None]
    logy_P = np.log(y_P)
    best = None
    for theta0 in _starts(start, centre_A, logy_P):
        result = least_squares(
            _residuals,
            theta0,
            jac=_jacobian,
            args=(u_AxP, logy_P),
            method="trf",
            max_nfev=max_evaluations,
            x_scale="jac",
        )
        if best is None or (result.success and (not best.success or result.cost < best.cost)):
            best = result
    assert best is not None  # _starts gives at least one starting point
    if not best.success or not np.all(np.isfinite(best.x)):
        raise NotConvergedError(
            f"fit over {', '.join(axes)} did not converge after {best.nfev} evaluations: "
            f"{best.message}"
        )
    singular = np.linalg.svd(best.jac, compute_uv=False)
    if singular[-1] < RANK_TOLERANCE * singular[0]:
        raise NotConvergedError(
            f"fit over {', '.join(axes)} leaves a parameter undetermined (one term does not "
            "change the prediction anywhere in the data): fit fewer terms"
        )
    theta = best.x
    params = {"A": float(np.exp(theta[0] + theta[1] * centre_A[0])), "alpha": float(theta[1])}
    if len(axes) > 1:
        params.update(
            {"B": float(np.exp(theta[2] + theta[3] * centre_A[1])), "beta": float(theta[3])}
        )
    rms = float(np.sqrt(np.mean(best.fun**2)))
    return Estimate(params=params, rms_log_residual=rms, evaluations=int(best.nfev))


def _starts(start: dict[str, float] | None, centre_A: np.ndarray, logy_P: np.ndarray):
    """Starting points in fitted coordinates (log of each term at its axis' centre, exponent)."""
    if start is not None:
        theta = [np.log(start["A"]) - start["alpha"] * centre_A[0], start["alpha"]]
        if len(centre_A) > 1:
            theta += [np.log(start["B"]) - start["beta"] * centre_A[1], start["beta"]]
        return [np.asarray(theta, float)]
    level = float(np.mean(logy_P))
    if len(centre_A) == 1:
        return [np.array([level, 0.5])]
    half = level - np.log(2.0)  # each term half of the typical gap
    return [np.array([half, a, half, b]) for a in STARTS for b in STARTS]
