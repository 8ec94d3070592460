"""The Gram matrix of the per-objective store (gradients/store.py) against an independent formula:
H_ij = Σ_p ⟨g_i[p], g_j[p]⟩ written out in float64 over whole flattened gradients, whatever the block
size the store's products are formed in."""

from __future__ import annotations

import pytest
import torch

from raco.gradients.store import GRAM_BLOCK, gram_matrix, gram_partial, product_dtype


def _store(k: int, shapes: list[tuple[int, ...]], seed: int = 0) -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {i: torch.randn((k, *shape), generator=gen) * 10.0 ** (i - 1) for i, shape in enumerate(shapes)}


def _written_out(store: dict[int, torch.Tensor], k: int) -> torch.Tensor:
    whole = torch.cat([g.reshape(k, -1).double() for g in store.values()], dim=1)  # [k, all entries]
    return torch.stack([torch.stack([(whole[i] * whole[j]).sum() for j in range(k)]) for i in range(k)])


@pytest.mark.parametrize("k", [1, 2, 3])
@pytest.mark.parametrize("block", [1, 7, 64, GRAM_BLOCK])
def test_blocks_give_the_written_out_gram(k, block):
    store = _store(k, [(5, 9), (33,), (2, 3, 4)])
    expected = _written_out(store, k)
    got = gram_partial(store, k, block=block)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(got, got.t(), rtol=0, atol=0)  # symmetric: each block's product is


def test_one_block_per_small_parameter_is_the_whole_product():
    """A parameter of at most GRAM_BLOCK entries is one block: bit for bit the whole float64 product."""
    store = _store(2, [(40, 30)])
    flat = store[0].reshape(2, -1).double()
    assert torch.equal(gram_matrix(store, 2), flat @ flat.t())


def test_empty_store_is_zero():
    assert torch.equal(gram_matrix({}, 3), torch.zeros(3, 3, dtype=torch.float64))


@pytest.mark.parametrize("block", [64, GRAM_BLOCK])
def test_float32_block_products_summed_in_float64(block):
    """What accelerators use (``product_dtype``): float32 products, float64 sums — within float32
    rounding of the written-out float64 Gram, and float64 when returned."""
    store = _store(3, [(300, 70), (1000,), (7, 9, 11)])
    expected = _written_out(store, 3)
    got = gram_partial(store, 3, block=block, dtype=torch.float32)
    assert got.dtype == torch.float64
    scale = expected.diagonal().sqrt()
    torch.testing.assert_close(
        got / torch.outer(scale, scale), expected / torch.outer(scale, scale), rtol=0, atol=1e-6
    )
    assert product_dtype(torch.device("cpu")) == torch.float64
    assert product_dtype(torch.device("cuda")) == torch.float32
