"""The gradient engine: k per-objective gradients → Gram matrix → aggregator → Σ a_i g_i in ``.grad``.

One optimizer step (Algorithm 1, docs/algorithm.md §3)::

    counts = engine.step_counts(micro_batches)          # loss denominators of the whole step (all ranks)
    for mb in micro_batches:
        engine.accumulate(mb, counts=counts)            # forward + backward(s); per-objective grads
    report = engine.finish_step()                       # Gram, aggregation, writes .grad
    optimizer.step(); optimizer.zero_grad(set_to_none=True)

Losses are normalised by denominators of the whole step's global batch (``normalize=``: "batch", the
B pairs, as the paper; or "labeled", the N_i pairs labelled for objective i; losses/pairwise.py), so
4 micro-batches of 2 pairs give exactly the per-objective gradients of 1 batch of 8 (and 2 ranks × 4
pairs those of 1 rank × 8).

Paths (``path=``):
  * ``"fused"`` (what ``"auto"`` picks for k ≥ 2): one forward, ONE backward; per-objective
    gradients formed by hooks (gradients/capture.py). Exact (tested equal to ``"plain"``). A model it
    cannot decompose per row (e.g. GPT-2's learned position embeddings, shared across rows) raises
    ``FusedPathUnsupported``; under ``"auto"`` the engine then warns and uses ``"plain"``, re-running
    the micro-batch from the same random state (so the result is exactly the plain path's). The first
    fused micro-batch is also computed by the plain path and compared parameter by parameter
    (``verify_fused``): a model the hooks misread (a weight used outside the module holding it, rows
    reordered inside the network) is caught there, before it trains, and treated the same way.
    With ``share_prompt`` its backward is seeded per row (gradients/capture.py, "Shared prompt").
  * ``"plain"``: one forward, then one ``autograd.grad`` per objective — the correctness reference
    (and what ``"auto"`` picks for k = 1: a single backward, without hooks).
  * ``"scalarized"``: one backward of Σ w_i L_i straight into ``.grad`` (weighted-sum methods only:
    DPO-LW, AMoPO); no Gram matrix, so no Pareto measure is reported.

Solving (``solve_per=``): ``"step"`` (default, Algorithm 1 as written) accumulates per-objective
gradients over micro-batches (and ranks) and solves the dual once; ``"microbatch"`` (the authors' code)
solves on each rank's micro-batch and sums the directions, which are then all-reduced.

Storage (``store=``): ``"gradients"`` (default) keeps the k per-objective gradients ``[k, *shape]`` of
every trainable parameter until the step is solved (k × the trainable parameters; under FSDP2 k × the
local shards). ``"gram"`` keeps none, for models where k copies of the gradients do not fit: on the fused
path, each parameter's k gradients are folded into H = G Gᵀ as soon as they are complete and dropped
(gradients/capture.py ``complete``), the dual is solved on H, and a second backward of the same graph
with row weights Σ_i a_i u_{i,r} forms the update Σ_i a_i g_i directly. Cost: one more backward pass
(no extra forward; the activations are kept through both, or recomputed in each under checkpointing)
forming one weighted product per parameter besides the first pass's k. Exact for
what it solves: the dual of each micro-batch's Gram matrix, i.e. ``solve_per="microbatch"`` (required);
that is Algorithm 1's per-step solve whenever a step is one micro-batch on one process.

Distributed (docs/distributed.md): pass the *unwrapped* model, a DDP wrapper (whose ``.module`` is
used, so DDP's own hooks never fire: no parameter accumulates a gradient), or an FSDP2 model
(``fully_shard``, gradients/sharding.py). Replicated parameters: per-objective gradients (or
directions) are all-reduced explicitly, in flat buckets, so every rank writes the same ``.grad``.
FSDP2-sharded parameters: each rank keeps only its k shards, reduce-scattered from the fused hooks as
they are formed (gradients/sharded.py); H = all-reduce of the shard-local Σ_p G_p G_pᵀ (k × k numbers);
Σ a_i g_i is written into the sharded ``.grad``. The plain and scalarized paths run one backward per
objective (or one of Σ w_i L_i) through FSDP2's own hooks, which reduce-scatter into the sharded
``.grad`` (gradients/sharded.py ``backward_shards``). Sharded models take ``solve_per="step"``
(a rank-local solve needs rank-local gradients, never formed), or ``store="gram"`` with
``solve_per="microbatch"``: each rank folds its shards into H as they arrive, H is all-reduced, and the
second backward's update is reduce-scattered into the sharded ``.grad`` — a solve per micro-batch of all
ranks together. The fused-vs-plain check of the first
micro-batch is agreed on by all ranks, so they keep or leave the fused path together.
Every tensor given to a collective lives on the compute device (gradients/collectives.py).

Packed micro-batches (data/packing.py: rows concatenated without padding, ``row_ids`` per token) are
taken by every path, the fused capture mapping each token to its row. The first packed micro-batch is
checked first (``check_packing``): its policy log-probs, and the reference's, must equal those of the
same rows padded (no-grad forwards of both; relative 1e-4 with float32 weights, computed without
autocast, 1e-3 with bfloat16/float16 weights), or a ``ConfigError`` names the model type and its
attention implementation: one that let packed rows attend to each other would otherwise train on mixed
rows silently. Not with ``share_prompt``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from raco.aggregators import AGGREGATORS
from raco.config_tree import ConfigError
from raco.data.packing import is_packed, packing_problem, row_count
from raco.gradients import collectives
from raco.gradients import store as gstore
from raco.gradients.capture import FusedCapture, FusedPathUnsupported
from raco.gradients.report import (
    MicroBatchStats,
    NonFiniteGradientError,
    StepReport,
    gram_summary,
    pareto_measure,
)
from raco.gradients.rows import recorded_logps, row_seeds
from raco.gradients.sharded import ShardedReducer, backward_shards, is_sharded, local_zeros
from raco.gradients.verify import fused_mismatch, packed_mismatch, rng_state, set_rng_state
from raco.losses.logps import Batch, response_logps, unwrap_causal_lm
from raco.losses.pairwise import (
    NORMALIZATIONS,
    ObjectiveSpec,
    PairLogps,
    loss_denominators,
    objective_losses,
    reward_sums,
)
from raco.losses.shared_prefix import checkpointed, shared_prefix_logps
from raco.models.reference import NO_REFERENCE, Reference
from raco.registry import AGGREGATORS as DECLARED
from raco.registry import check_aggregator_options

PATHS = ("auto", "fused", "plain", "scalarized")
STORES = ("gradients", "gram")
Aggregator = Callable[..., Any]


def resolve_aggregator(method: str | Aggregator) -> Aggregator:
    """``raco.aggregators.AGGREGATORS[method]`` or a callable ``f(gram, weights, **options)``.

    The engine knows aggregators, not methods: a method such as ``amopo`` is expanded into its
    aggregator by :func:`raco.config.method_plan`."""
    if callable(method):
        return method
    if method not in AGGREGATORS:
        raise ValueError(f"unknown aggregator {method!r}; choose one of {sorted(AGGREGATORS)}")
    return AGGREGATORS[method]


def _check_method(method: str | Aggregator, options: Mapping[str, Any], path: str) -> None:
    """Validate a named aggregator, its options and ``path`` once, against its declaration in
    :mod:`raco.registry` (a callable is taken as is, and is never scalarized)."""
    if callable(method):
        if path == "scalarized":
            raise ValueError("path='scalarized' is exact only for weighted-sum aggregation (a = w)")
        return
    resolve_aggregator(method)
    check_aggregator_options(method, options)
    if path == "scalarized" and not DECLARED[method].scalarizable:
        raise ValueError("path='scalarized' is exact only for weighted-sum aggregation (a = w)")


def _compute_device(params: Sequence[Tensor]) -> torch.device:
    """Where the trainable parameters (their local shards) live; the CPU when there are none."""
    return params[0].device if params else torch.device("cpu")


class GradientEngine:
    """Per-objective gradients of a policy, aggregated into one update (see module docstring).

    Args:
        model: the policy (HF causal LM, possibly peft-wrapped); its ``requires_grad`` params are trained.
        objectives: one ``ObjectiveSpec`` per objective (loss type, β, ...), k = len(objectives).
        weights: user weights w ∈ simplex, ``[k]``.
        method: aggregator name in ``raco.aggregators.AGGREGATORS`` (never a method such as ``amopo``:
            see :func:`raco.config.method_plan`) or ``f(gram, weights, **options) -> Aggregation``.
        method_options: the options the aggregator declares in :mod:`raco.registry`, e.g. ``{"c": 0.4}``.
        path: "auto" (fused, or plain when k = 1), "fused", "plain" or "scalarized" (weighted_sum only).
        solve_per: "step" or "microbatch".
        reference: π_ref (:class:`raco.models.reference.Reference`); :data:`NO_REFERENCE` when every
            loss is reference-free or ``accumulate`` is always given ``ref_logps``.
        normalize: loss denominators, "batch" (B pairs; the paper's meaning of the weights) or "labeled"
            (N_i pairs with a non-zero sign for objective i); see losses/pairwise.py.
        verify_fused: compare the first fused micro-batch with the plain path (see module docstring).
        device: the compute device every collective's tensors live on (default: the parameters').
        bucket_bytes: size of the flat buckets per-objective gradients are reduced in.
        logprob_chunk: compute the policy's log-probs C response tokens at a time (losses/chunked.py:
            exact, memory O(C · vocabulary)); None computes them at once. Not with FSDP2.
        store: "gradients" (keep the k per-objective gradients) or "gram" (keep only H; a second
            backward forms the update; fused path and ``solve_per="microbatch"`` only): see above.
        share_prompt: run each pair's prompt once and continue both responses from its key/value
            cache (losses/shared_prefix.py: exact), on every path; the fused one seeds its backward per
            row (gradients/rows.py ``pair_seeds``) and is ``FusedPathUnsupported`` for objectives
            weighing a pair's responses in different ratios (then, under "auto", the plain path).
    """

    def __init__(
        self,
        model: nn.Module,
        objectives: Sequence[ObjectiveSpec],
        weights: Sequence[float] | Tensor,
        *,
        method: str | Aggregator = "raco",
        method_options: Mapping[str, Any] | None = None,
        path: str = "auto",
        solve_per: str = "step",
        reference: Reference = NO_REFERENCE,
        normalize: str = "batch",
        verify_fused: bool = True,
        device: torch.device | str | None = None,
        bucket_bytes: int = collectives.BUCKET_BYTES,
        logprob_chunk: int | None = None,
        store: str = "gradients",
        share_prompt: bool = False,
    ) -> None:
        self.objectives = tuple(objectives)
        self.k = len(self.objectives)
        self.weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if self.k == 0 or self.weights.shape != (self.k,):
            raise ValueError(
                f"need k ≥ 1 objectives and k weights; got {self.k} and {tuple(self.weights.shape)}"
            )
        if path not in PATHS or solve_per not in ("step", "microbatch"):
            raise ValueError(f"path must be one of {PATHS} and solve_per 'step' or 'microbatch'")
        if normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
        _check_method(method, method_options or {}, path)
        self.model, self.reference = model, reference
        self.method, self.method_options = method, dict(method_options or {})
        # auto: fused for k ≥ 2; for k = 1 the plain path is already a single backward, without hooks
        self.path = ("fused" if self.k > 1 else "plain") if path == "auto" else path
        self._auto = path == "auto"
        self.solve_per, self.normalize = solve_per, normalize
        self.params = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
        self.sharded = any(is_sharded(p) for p in self.params)
        if self.sharded and solve_per != "step" and store != "gram":
            raise ValueError(
                "an FSDP2-sharded model takes solve_per 'step' (or store 'gram', which solves each "
                "micro-batch of all ranks): a per-rank solve needs this rank's unreduced gradients, "
                "which sharding never forms"
            )
        if self.sharded and logprob_chunk:
            raise ValueError(
                "model.logprob_chunk is not supported with FSDP2: chunked log-probs call the decoder and "
                "the head directly, outside the root unit's hooks that gather their weights"
            )
        self.logprob_chunk = logprob_chunk
        self.store = store
        self._check_store()
        if share_prompt and checkpointed(model):
            raise ValueError("model.share_prompt: not with model.gradient_checkpointing (it drops the cache)")
        self.share_prompt = share_prompt
        self._verify = verify_fused and self.path == "fused" and store == "gradients"
        self.device = torch.device(device) if device is not None else _compute_device(self.params)
        self.bucket_bytes = bucket_bytes
        self.peak_store_bytes = 0  # the most bytes of per-objective gradients this rank held at once
        causal_lm = unwrap_causal_lm(model)
        self._capture = FusedCapture(
            causal_lm, causal_lm.get_output_embeddings(), causal_lm.get_input_embeddings()
        )
        self._packing_checked = False
        self._reset()

    def _check_store(self) -> None:
        if self.store not in STORES:
            raise ValueError(f"store must be one of {STORES}, got {self.store!r}")
        if self.store == "gradients":
            return
        if self.path != "fused":
            raise ValueError(
                f"store 'gram' folds H from the fused path's hooks: it needs path 'fused' (or 'auto' "
                f"with k ≥ 2), not {self.path!r}"
            )
        if self.solve_per != "microbatch":
            raise ValueError(
                "store 'gram' solves each micro-batch's dual (its gradients are gone by the end of the "
                "step): set solve_per 'microbatch' (for one micro-batch per step on one process, the "
                "same update as a per-step solve)"
            )

    def store_bytes(self) -> int:
        """Bytes of per-objective gradients this rank holds now (``[k, *shape]``, or shards)."""
        return sum(g.numel() * g.element_size() for g in self._store.values())

    def discard_step(self) -> None:
        """Drop everything accumulated since the last ``finish_step`` (e.g. a step that is skipped)."""
        self._reset()

    def _reset(self) -> None:
        self._scale = 1.0
        self._store: gstore.ParamGrads = {}
        self._direction: gstore.ParamGrads = {}
        self._losses = torch.zeros(self.k, dtype=torch.float64, device=self.device)
        self._replicated: set[int] = set()  # under FSDP2: keys of unsharded parameters
        self._micro_coefficients: list[Tensor] = []
        self._last: tuple[Tensor, Any] | None = None
        self._started = False

    @property
    def needs_reference(self) -> bool:
        return any(spec.needs_reference for spec in self.objectives)

    def step_counts(self, batches: Sequence[Batch]) -> Tensor:
        """``[k]`` loss denominators of this step (B, or N_i under "labeled"), summed over all ranks."""
        counts = loss_denominators([b["signs"] for b in batches], self.normalize)
        return collectives.sum_over_ranks(counts, self.device).cpu()

    def accumulate(
        self, batch: Batch, *, counts: Tensor, ref_logps: Tensor | None = None, loss_scale: float = 1.0
    ) -> MicroBatchStats:
        """Forward + backward(s) of one micro-batch; adds its per-objective gradients to the step.

        ``counts``: global denominators from ``step_counts``; ``ref_logps [2B]``: reference log-probs
        (when None and a loss needs them: ``reference.logps(batch)``).
        ``loss_scale``: factor S seeding the backward passes (float16 mixed precision, see
        training/precision.py); the stored gradients are divided by S at once, so everything the
        engine reports and writes is unscaled."""
        if not self._started:
            for p in self.params:
                p.grad = None
            self._started = True
        if ref_logps is None and self.needs_reference:
            ref_logps = self.reference.logps(batch)
            if ref_logps is None:
                raise ValueError(
                    "a loss needs reference log-probs: give the engine a reference or accumulate ref_logps"
                )
        if is_packed(batch) and not self._packing_checked:
            self.check_packing(batch)
        signs, counts = batch["signs"], torch.as_tensor(counts)
        self._scale = float(loss_scale)
        if self.path == "fused":
            pair, losses = self._fused_or_fallback(batch, ref_logps, signs, counts)
        elif self.path == "plain":
            pair, losses, grads = self._plain(batch, ref_logps, signs, counts)
            gstore.accumulate_into(self._store, grads)
        else:
            pair, losses = self._scalarized(batch, ref_logps, signs, counts)
        self._losses += losses.detach().to(self._losses)
        self.peak_store_bytes = max(self.peak_store_bytes, self.store_bytes())
        if self.solve_per == "microbatch" and self.path != "scalarized" and not self._gram_only():
            self._solve_microbatch()
        return MicroBatchStats(
            losses.detach().to("cpu", torch.float64), reward_sums(pair, signs, self.objectives)
        )

    def check_packing(self, packed: Batch) -> None:
        """Refuse packed batches the model cannot honour (module docstring): ``share_prompt``, a forward
        without ``position_ids``, or packed log-probs (the policy's and the reference's) that differ from
        the padded ones — a ``ConfigError`` naming the model type, ``model.attn_implementation`` and
        ``data.packing``. Run once, on the first packed micro-batch (no gradient; random state kept)."""
        causal_lm = unwrap_causal_lm(self.model)
        model_type = getattr(causal_lm.config, "model_type", type(causal_lm).__name__)
        attn = getattr(causal_lm.config, "_attn_implementation", None)
        where = f"data.packing: model type {model_type!r} with model.attn_implementation {attn!r}"
        if self.share_prompt:
            raise ConfigError("data.packing: not with model.share_prompt (set one of them to false)")
        problem = packing_problem(causal_lm)
        if problem is None:
            problem = self._agreed(
                packed_mismatch(self.model, self.reference.logps, packed, self.logprob_chunk)
            )
        if problem is not None:
            raise ConfigError(
                f"{where}: {problem}; its rows would attend to each other. Set data.packing: false or "
                "another model.attn_implementation (sdpa, eager and flash_attention_2 keep packed rows apart)"
            )
        self._packing_checked = True

    def _fused_or_fallback(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor]:
        """The fused path; on the first micro-batch checked against the plain path. When the model is
        unsupported: an error for ``path="fused"``; under ``"auto"`` a warning and the plain path from
        the same random state (dropout masks), i.e. exactly what the plain path would have done."""
        rng = rng_state()
        try:
            pair, losses, grads = self._fused(batch, ref, signs, counts)
            if self._verify:  # the plain pass is only a witness: the step keeps the fused numbers, so
                set_rng_state(rng)  # a resumed run (verifying again) repeats the uninterrupted one
                _, _, plain = self._plain(batch, ref, signs, counts)
                mismatch = self._agreed(fused_mismatch(grads, plain, 1e-3 if self._exact_dtype() else 5e-2))
                if mismatch is not None:
                    raise FusedPathUnsupported(f"its gradients differ from the plain path's ({mismatch})")
                self._verify = False
        except FusedPathUnsupported as err:
            if not self._auto:
                raise FusedPathUnsupported(f"path='fused' does not support this model: {err}") from err
            warnings.warn(
                f"the fused one-backward path does not support this model ({err}); using the plain "
                "path (one backward per objective), which is exact but slower",
                RuntimeWarning,
                stacklevel=3,
            )
            self.path = "plain"
            set_rng_state(rng)
            pair, losses, grads = self._plain(batch, ref, signs, counts)
        gstore.accumulate_into(self._store, grads)
        return pair, losses

    def _agreed(self, mismatch: str | None) -> str | None:
        """A mismatch on any rank is one on every rank (each checks its own rows or shards): the ranks
        must all keep the fused path or all leave it, or their collectives would no longer pair up."""
        if collectives.world_size() == 1:
            return mismatch
        flag = collectives.sum_over_ranks(torch.tensor([float(mismatch is not None)]), self.device)
        return mismatch or ("on another process" if float(flag) > 0 else None)

    def _exact_dtype(self) -> bool:
        """float32 compute (no autocast, float32 weights): the fused and plain paths agree to ~1e-6."""
        autocast = torch.is_autocast_enabled() or torch.is_autocast_enabled("cpu")
        return not autocast and all(p.dtype == torch.float32 for p in self.params)

    def _forward_losses(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor]:
        """One policy forward with its autograd graph (the prompt once per pair with share_prompt); the k
        per-objective losses."""
        if self.share_prompt:
            if is_packed(batch):
                raise ValueError("model.share_prompt: not with a packed batch (data.packing)")
            logps, lengths = shared_prefix_logps(self.model, batch, chunk_tokens=self.logprob_chunk)
        else:
            logps, lengths = response_logps(self.model, batch, chunk_tokens=self.logprob_chunk)
        pair = PairLogps.from_rows(logps, lengths, ref)
        return pair, objective_losses(pair, signs, self.objectives, counts)

    def _plain(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor, gstore.ParamGrads]:
        pair, losses = self._forward_losses(batch, ref, signs, counts)
        per_objective = [
            self._objective_grads(losses[i] * self._scale, i < self.k - 1) for i in range(self.k)
        ]
        stacked = {}
        for p in self.params:
            if any(id(p) in g for g in per_objective):
                zero = local_zeros(p)
                stacked[id(p)] = torch.stack([g.get(id(p), zero) for g in per_objective]).float()
        return pair, losses.detach(), self._unscaled(stacked)

    def _objective_grads(self, loss: Tensor, retain_graph: bool) -> gstore.ParamGrads:
        """∂loss/∂p per trainable parameter (absent where unused): ``autograd.grad``, or under FSDP2 a
        backward through FSDP's hooks giving this rank's shard of the sum over ranks."""
        if self.sharded:
            grads, replicated = backward_shards(loss, self.params, retain_graph)
            self._replicated |= replicated
            return grads
        found = torch.autograd.grad(loss, self.params, retain_graph=retain_graph, allow_unused=True)
        return {id(p): g for p, g in zip(self.params, found, strict=True) if g is not None}

    def _reducer(self) -> ShardedReducer | None:
        """Under FSDP2: a reducer of this micro-batch's gradients into shards (else None)."""
        if not self.sharded:
            return None
        return ShardedReducer({id(p): p for p in self.params}, self.bucket_bytes)

    def _gram_folder(self) -> tuple[Callable[[int, Tensor], None], Callable[[], Tensor]]:
        """``store="gram"``: ``(complete, gram)`` — ``complete(key, G_p)`` receives each parameter's whole
        ``[k, *shape]`` gradient (gradients/capture.py) and folds G_p G_pᵀ into H at once; ``gram()``
        after the backward returns H ``[k, k]`` float64 on the host (one sync). Under FSDP2, G_p is
        reduce-scattered first and each rank folds its shard as it arrives (ShardedReducer ``consume``),
        H being the all-reduce of the shard-local sums plus the all-reduced unsharded parameters'."""
        parts: list[Tensor] = []

        def fold(key: int, g: Tensor) -> None:
            parts.append(gstore.gram_partial({key: g}, self.k))

        def total(items: list[Tensor]) -> Tensor:
            return sum(items[1:], items[0]) if items else torch.zeros(self.k, self.k, dtype=torch.float64)

        reducer = self._reducer()
        if reducer is None:
            return fold, lambda: total(parts).cpu()
        reducer.consume = fold

        def gram() -> Tensor:
            rest = reducer.finish()  # the unsharded parameters' local sums
            shards = total(parts).to(self.device)
            collectives.all_reduce_(shards)
            self._all_reduce(rest, self.k, keys=reducer.replicated)
            return shards.cpu() + gstore.gram_partial(rest, self.k).cpu()

        return reducer.add, gram

    def _gram_only(self) -> bool:
        """``store="gram"`` in force (a fallback to the plain path stores gradients again)."""
        return self.store == "gram" and self.path == "fused"

    def _recorded_forward(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Inside ``recording``: the policy's forward with the capture told its rows, the k losses, and
        the capture's row weights u_{i,r} = ∂L_i/∂ log π(r) (with a shared prompt: pair weights, and
        per-row seeds, gradients/rows.py). Returns ``(logps, lengths, losses, seed)``, the backward's
        seed per row already multiplied by the loss scale."""
        logps, lengths = recorded_logps(
            self._capture, self.model, batch, self.logprob_chunk, self.share_prompt
        )
        leaf = logps.detach().requires_grad_(True)
        pair = PairLogps.from_rows(leaf, lengths, ref)
        with torch.enable_grad():
            losses = objective_losses(pair, signs, self.objectives, counts)
            u = torch.stack(
                [torch.autograd.grad(losses[i], leaf, retain_graph=True)[0] for i in range(self.k)]
            )
        u, seed = row_seeds(u, self.share_prompt, [o.name for o in self.objectives], self._agreed)
        self._capture.set_row_weights(u)
        return logps, lengths, losses, seed.to(logps) * self._scale

    def _fused(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor, gstore.ParamGrads]:
        if self.store == "gram":
            return self._fused_gram(batch, ref, signs, counts)
        capture = self._capture
        reducer = self._reducer()
        capture.sink = reducer.add if reducer is not None else None
        with capture.recording(n_rows=row_count(batch)):
            logps, lengths, losses, seed = self._recorded_forward(batch, ref, signs, counts)
            logps.backward(seed)
        try:
            per_objective = capture.collect()
        finally:  # drained even when the capture fails, on every rank alike
            if reducer is not None:
                per_objective = reducer.finish()
                self._replicated |= reducer.replicated
        return (
            PairLogps.from_rows(logps.detach(), lengths, ref),
            losses.detach(),
            self._unscaled(per_objective),
        )

    def _fused_gram(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor, gstore.ParamGrads]:
        """``store="gram"``: H = Σ_p G_p G_pᵀ folded from the hooks as each G_p is complete (nothing
        ``[k, *shape]`` kept), the micro-batch's dual solved on it, then a second backward of the same
        graph with row weights v_r = Σ_i a_i u_{i,r}, whose hooks form Σ_i a_i g_i = Σ_r v_r ∇ log π(r)
        (added to the step's direction). Returns no per-objective gradients. With a shared prompt both
        passes take the same per-row seeds s, with pair weights p and then Σ_i a_i p_i."""
        capture = self._capture
        capture.sink, (capture.complete, gram_of) = None, self._gram_folder()
        # both backward passes inside recording(): a checkpointed region recomputed in the second must
        # apply the same taps as the forward did
        with capture.recording(n_rows=row_count(batch)):
            try:
                logps, lengths, losses, seed = self._recorded_forward(batch, ref, signs, counts)
                u = capture.row_weights  # shared prompt: both passes weigh pairs, seeded per row
                logps.backward(seed, retain_graph=True)
                capture.collect()
            finally:
                capture.complete = None
            gram = gram_of() / self._scale**2
            self._check_finite(gram)
            aggregation = self._aggregate(gram)
            capture.grads = {}
            capture.set_row_weights((aggregation.coefficients.to(u) @ u)[None])
            reducer = self._reducer()
            capture.sink = reducer.add if reducer is not None else None
            logps.backward(seed)
            direction = capture.collect()
            if reducer is not None:
                direction = reducer.finish()
                self._replicated |= reducer.replicated
            gstore.accumulate_into(self._direction, self._unscaled(direction))
        self._micro_coefficients.append(aggregation.coefficients.to(torch.float64))
        self._last = (gram, aggregation)
        return PairLogps.from_rows(logps.detach(), lengths, ref), losses.detach(), {}

    def _scalarized(
        self, batch: Batch, ref: Tensor | None, signs: Tensor, counts: Tensor
    ) -> tuple[PairLogps, Tensor]:
        pair, losses = self._forward_losses(batch, ref, signs, counts)
        scaled = self.weights.to(losses.dtype) @ losses * self._scale
        if self.sharded:  # shards of Σ_ranks, summed over micro-batches as [1, *local] until finish_step
            shards = self._objective_grads(scaled, retain_graph=False)
            gstore.accumulate_into(
                self._direction, {key: (g / self._scale)[None].float() for key, g in shards.items()}
            )
            return pair, losses.detach()
        grads = torch.autograd.grad(scaled, self.params, allow_unused=True)
        for p, g in zip(self.params, grads, strict=True):
            if g is not None:
                g = g / self._scale
                p.grad = g if p.grad is None else p.grad + g
        return pair, losses.detach()

    def _unscaled(self, grads: gstore.ParamGrads) -> gstore.ParamGrads:
        if self._scale != 1.0:
            for g in grads.values():
                g.div_(self._scale)
        return grads

    def _aggregate(self, gram: Tensor) -> Any:
        aggregator = resolve_aggregator(self.method)
        return aggregator(gram, self.weights, **self.method_options)

    def _check_finite(self, gram: Tensor) -> None:
        if not bool(torch.isfinite(gram).all()):
            self._reset()
            raise NonFiniteGradientError(
                "a per-objective gradient is NaN or inf; the step was discarded (gradient norms² "
                f"{gram.diagonal().tolist()})"
            )

    def _solve_microbatch(self) -> None:
        # rank-local solve (as in the authors' code); the summed directions are all-reduced at finish_step
        gram = gstore.gram_matrix(self._store, self.k)
        self._check_finite(gram)
        aggregation = self._aggregate(gram)
        gstore.add_direction(self._direction, self._store, aggregation.coefficients)
        self._micro_coefficients.append(aggregation.coefficients.to(torch.float64))
        self._last = (gram, aggregation)
        self._store = {}

    def finish_step(self) -> StepReport:
        """Solve (or finish solving) the step, write Σ a_i g_i into ``.grad``, return the report."""
        if self.path == "scalarized" and self.sharded:
            self._all_reduce(self._direction, rows=1, keys=self._replicated)
            gstore.write_direction(self._direction, torch.ones(1), self.params)
            report = StepReport(coefficients=self.weights.clone(), losses=self._reduced_losses())
        elif self.path == "scalarized":
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            collectives.all_reduce_bucketed_(grads, self.bucket_bytes)
            for p, g in zip(self.params, grads, strict=True):
                p.grad = g
            report = StepReport(coefficients=self.weights.clone(), losses=self._reduced_losses())
        elif self.solve_per == "microbatch":  # sharded (store "gram"): shards are sums over ranks already
            self._all_reduce(self._direction, rows=1, keys=self._replicated if self.sharded else None)
            gstore.write_direction(self._direction, torch.ones(1), self.params)
            assert self._last is not None, "finish_step called before accumulate"
            report = self._report(*self._last, torch.stack(self._micro_coefficients).mean(dim=0))
        else:
            gram = self._reduced_gram()
            self._check_finite(gram)
            aggregation = self._aggregate(gram)
            gstore.write_direction(self._store, aggregation.coefficients, self.params)
            report = self._report(gram, aggregation, aggregation.coefficients.to(torch.float64))
        self._reset()
        return report

    def _all_reduce(self, grads: gstore.ParamGrads, rows: int, keys: set[int] | None = None) -> None:
        """Sum the entries of ``grads`` (``[rows, *shape]``; zeros where absent) over ranks, bucketed, in
        parameter order — the same on every rank, so that the buckets line up (``id()`` keys differ
        between processes)."""
        if collectives.world_size() == 1:
            return
        ordered = []
        for p in self.params:
            if keys is None or id(p) in keys:
                if id(p) not in grads:
                    grads[id(p)] = torch.zeros((rows, *p.shape), dtype=torch.float32, device=p.device)
                ordered.append(grads[id(p)])
        collectives.all_reduce_bucketed_(ordered, self.bucket_bytes)

    def _reduced_gram(self) -> Tensor:
        """Sum the replicated per-objective gradients over ranks (bucketed all-reduce) and form H: under
        FSDP2 the all-reduce of the shard-local partial sums plus the replicated parameters' share."""
        replicated = self._replicated if self.sharded else None
        self._all_reduce(self._store, self.k, replicated)
        if not self.sharded:
            return gstore.gram_matrix(self._store, self.k)
        shards = [key for key in self._store if key not in self._replicated]
        partial = gstore.gram_partial(self._store, self.k, shards).to(self.device)
        collectives.all_reduce_(partial)
        rest = gstore.gram_partial(
            self._store, self.k, [key for key in self._store if key in self._replicated]
        )
        return partial.cpu() + rest.cpu()

    def _reduced_losses(self) -> Tensor:
        return collectives.sum_over_ranks(self._losses, self.device).cpu()

    def _report(self, gram: Tensor, aggregation: Any, coefficients: Tensor) -> StepReport:
        norms, cosines = gram_summary(gram)
        dual = getattr(aggregation, "dual", None)
        clip = bool(getattr(aggregation, "clip_active", False))
        return StepReport(
            coefficients=coefficients,
            losses=self._reduced_losses(),
            gram=gram,
            dual=dual,
            pareto_measure=pareto_measure(gram),
            grad_norms=norms,
            cosines=cosines,
            clip_active=clip,
        )
