"""benchmarks/convergence.py (issue 15): the Thm 3.2 witness against hand-derived values, the test
problems' gradients against torch.autograd, GD on a convex problem, and the --quick run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from raco.aggregators import cagrad, raco

from .scripts import load_benchmark

cv = load_benchmark("convergence")

# Hand-derived (see the comment above WITNESS in the benchmark): the dual's stationary point solves
# 377λ² − 182λ + 17 = 0, λ = (91 + 12√13)/377; ρ = (5√13 − 8)/29; p̃ = (0.2, 1 − λ),
# G p̃ = (λ − 0.8, 0.2 − λ), ρ̃ = (0.8 − λ)/‖G p̃‖.
LAM = (91 + 12 * math.sqrt(13)) / 377
RHO = (5 * math.sqrt(13) - 8) / 29
RHO_CLIPPED = (0.8 - LAM) / math.hypot(LAM - 0.8, 0.2 - LAM)


def test_hand_values_are_what_the_comment_says():
    assert abs(LAM - 0.356145) < 1e-6
    assert abs(RHO - 0.345785) < 1e-6
    assert abs(RHO_CLIPPED - 0.943330) < 1e-6
    # λ is a root of the squared stationarity condition and satisfies the unsquared one
    assert abs(377 * LAM**2 - 182 * LAM + 17) < 1e-12
    assert abs(58 * LAM - 14 - 8 * math.sqrt(29 * LAM**2 - 14 * LAM + 2)) < 1e-12


def test_witness_matches_hand_derivation():
    w = cv.WITNESS
    inst = cv.clip_instance(w["g"], w["w"], w["c"], w["lw_eta"])
    assert not inst.degenerate and inst.condition
    np.testing.assert_allclose(inst.p, [LAM, 1 - LAM], atol=1e-9)
    np.testing.assert_allclose(inst.p_clipped, [0.2, 1 - LAM], atol=1e-9)
    assert inst.rho == pytest.approx(RHO, abs=1e-9)
    assert inst.rho_clipped == pytest.approx(RHO_CLIPPED, abs=1e-9)
    expected = 0.5 * (1 - 0.5) * (RHO_CLIPPED - RHO)
    assert inst.delta == pytest.approx(expected, abs=1e-9)
    assert inst.delta == pytest.approx(0.149386, abs=1e-6)


def test_witness_coefficients_match_hand_derivation():
    g, w = torch.tensor(cv.WITNESS["g"]), torch.tensor(cv.WITNESS["w"])
    gram = g @ g.T
    s = 0.5 * 0.6  # c‖g₀‖
    norm_p = 3 / math.sqrt(13)
    norm_pt = math.hypot(LAM - 0.8, 0.2 - LAM)
    np.testing.assert_allclose(
        cagrad(gram, w, c=0.5).coefficients.numpy(), [0.2 + s * LAM / norm_p, 0.8 + s * (1 - LAM) / norm_p]
    )
    np.testing.assert_allclose(
        raco(gram, w, c=0.5).coefficients.numpy(), [0.2 + s * 0.2 / norm_pt, 0.8 + s * (1 - LAM) / norm_pt]
    )
    # the decimals quoted in the benchmark's comment
    np.testing.assert_allclose(cagrad(gram, w, c=0.5).coefficients.numpy(), [0.328410, 1.032145], atol=1e-6)
    np.testing.assert_allclose(raco(gram, w, c=0.5).coefficients.numpy(), [0.327519, 1.210518], atol=1e-6)


def test_gamma_difference_sign_on_random_instances():
    res = cv.part1(400, seed=3)
    table = res["table"]
    interior = table["p interior, p != w"]
    other = table["p at a vertex or p = w"]
    assert interior["n"] > 0 and interior["positive"] == interior["n"]
    assert other["positive"] == 0 and other["negative"] == 0
    assert res["identity_err"] < 1e-12


def _toy_torch(theta: torch.Tensor) -> torch.Tensor:
    """CAGrad's toy written independently with torch ops (Liu et al. 2021, appendix)."""
    x1, x2 = theta[0], theta[1]
    low = 5e-6
    f1 = torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), low).log() + 6
    f2 = torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), low).log() + 6
    c1 = torch.clamp(torch.tanh(x2 * 0.5), 0)
    q1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    q2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    c2 = torch.clamp(torch.tanh(-x2 * 0.5), 0)
    return torch.stack([f1 * c1 + q1 * c2, f2 * c1 + q2 * c2])


def _autograd(fn, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    out = fn(x)
    grads = [torch.autograd.grad(out[i], x, retain_graph=True)[0].numpy() for i in range(len(out))]
    return out.detach().numpy(), np.array(grads)


def test_toy_losses_and_gradients_match_autograd():
    rng = np.random.default_rng(0)
    points = rng.uniform(-10, 10, size=(60, 2))
    points = points[np.abs(points[:, 1]) > 1e-3]  # away from the kink at x₂ = 0
    losses, grads = cv.toy_evaluate(points)
    for theta, f, g in zip(points, losses, grads, strict=True):
        f_ref, g_ref = _autograd(_toy_torch, theta)
        np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-12)
    # the paper's Pareto set: x₂ ≈ −8.3552 for w = (½, ½), x₁ = 0
    np.testing.assert_allclose(cv.toy_minimiser(np.array([0.5, 0.5]))[0], [0.0, -8.3552], atol=1e-3)


@pytest.mark.parametrize("k", [2, 3])
def test_ff_and_quad_gradients_match_autograd(k):
    anchors = cv.ff_anchors(k)
    assert np.allclose(np.linalg.norm(anchors[0] - anchors[1]), 2.0)
    rng = np.random.default_rng(k)
    mats = cv.random_spd(rng, k, 8)
    a_t, m_t = torch.tensor(anchors), torch.tensor(mats)

    def ff_torch(x):
        return 1 - torch.exp(-((x[None, :] - a_t) ** 2).sum(-1))

    def quad_torch(x):
        d = x[None, :] - a_t
        return 0.5 * torch.einsum("ki,kij,kj->k", d, m_t, d)

    for evaluate, ref in ((cv.make_ff(anchors), ff_torch), (cv.make_quad(anchors, mats), quad_torch)):
        points = rng.normal(size=(5, 8))
        losses, grads = evaluate(points)
        for theta, f, g in zip(points, losses, grads, strict=True):
            f_ref, g_ref = _autograd(ref, theta)
            np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-14)


def test_ff_reference_minimisers_are_critical_for_l_w():
    p = cv.ff_problem(3)
    assert np.allclose(p.weighted_minimisers(np.array([1.0, 0.0, 0.0]))[0], cv.ff_anchors(3)[:1])
    w = np.array([0.6, 0.2, 0.2])
    pts, best = p.weighted_minimisers(w)
    _, grads = p.evaluate(pts)
    assert np.abs(np.einsum("k,rkn->rn", w, grads)).max() < 1e-8
    assert best == pytest.approx(float(p.evaluate(pts)[0][0] @ w))


def test_weighted_sum_gd_on_convex_problem_reaches_the_weighted_minimiser():
    p = cv.quad_problem(3, seed=7)
    rng = np.random.default_rng(7)  # the problem's anchors and matrices, rebuilt from its seed
    anchors = rng.standard_normal((3, p.dim))
    mats = cv.random_spd(rng, 3, p.dim)
    weights = np.array([[0.6, 0.2, 0.2], [0.1, 0.3, 0.6], [1 / 3, 1 / 3, 1 / 3]])
    starts = np.random.default_rng(1).uniform(-3, 3, size=(3, p.dim))
    res = cv.gradient_descent(p, "weighted_sum", starts, weights, steps=300)
    for r, w in enumerate(weights):
        # ∇L_w = Σ w_i A_i (θ − a_i) = 0
        lhs = sum(wi * m for wi, m in zip(w, mats, strict=True))
        rhs = sum(wi * m @ a for wi, m, a in zip(w, mats, anchors, strict=True))
        np.testing.assert_allclose(res.theta[r], np.linalg.solve(lhs, rhs), atol=1e-6)
        assert p.target_distance(res.losses[r], w) < 1e-6
    assert (res.hit <= 300).all()
    # MGDA ignores the weights: its end points are Pareto-critical but not the weighted minimisers
    mg = cv.gradient_descent(p, "mgda", starts, weights, steps=300)
    assert (mg.hit <= 300).all()
    assert max(p.target_distance(mg.losses[r], w) for r, w in enumerate(weights)) > 0.05


def test_quick_run_writes_its_figures(tmp_path, capsys):
    cv.main(["--quick", "--figures", str(tmp_path / "figs")])
    out = capsys.readouterr().out
    for heading in ("### 1.", "### 2.", "### 3a.", "### 3b.", "### 3c."):
        assert heading in out
    for method in cv.METHODS:
        assert method in out
    names = sorted(f.name for f in (tmp_path / "figs").iterdir())
    assert names == sorted(
        [
            "front_toy.png",
            "front_ff2.png",
            "front_ff3.png",
            "front_quad3.png",
            "toy_trajectories.png",
            "sweep_c.png",
            "sweep_k.png",
            "sweep_noise.png",
        ]
    )
    for f in (tmp_path / "figs").iterdir():
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size < 200_000
