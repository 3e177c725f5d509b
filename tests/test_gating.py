"""Gating functions ρ(g), ξ(g) of eq. (27)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from theory import rho, xi

unit = st.floats(0.0, 1.0, allow_nan=False)


def test_endpoints() -> None:
    # eq. (27): the routing gate is fully open at g = 0 and closed at g = 1
    assert rho(0.0) == 1.0
    assert rho(1.0) == 0.0
    assert xi(0.0) == 1.0
    assert xi(1.0) == 0.5


def test_array_matches_closed_form() -> None:
    g = np.linspace(0.0, 1.0, 11)
    np.testing.assert_allclose(rho(g), (1 - g) / (1 + g), rtol=0, atol=1e-15)
    np.testing.assert_allclose(xi(g), 1 / (1 + g), rtol=0, atol=1e-15)
    assert rho(g).dtype == np.float64 and rho(g).shape == g.shape


@given(unit)
def test_xi_in_half_one(g: float) -> None:
    assert 0.5 <= xi(g) <= 1.0


@given(unit)
def test_rho_in_unit_interval_and_identity(g: float) -> None:
    r = rho(g)
    assert 0.0 <= r <= 1.0
    # ρ = 2ξ − 1: the two gates are not independent (eq. 27)
    assert r == pytest.approx(2 * xi(g) - 1, abs=1e-15)


@given(unit, unit)
def test_rho_decreasing(g1: float, g2: float) -> None:
    lo, hi = sorted((g1, g2))
    assert rho(lo) >= rho(hi)
    assert xi(lo) >= xi(hi)


@pytest.mark.parametrize("fn", [rho, xi])
def test_bad_input(fn) -> None:
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got 1.5"):
        fn(1.5)
    with pytest.raises(ValueError, match=r"g must lie in \[0, 1\], got -0.1"):
        fn(np.array([0.2, -0.1]))
    with pytest.raises(ValueError, match="g must be finite"):
        fn(float("nan"))
    with pytest.raises(TypeError, match="g must be a real number"):
        fn("abc")
