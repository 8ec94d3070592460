"""Fused per-objective gradients from ONE backward pass (docs/algorithm.md §3).

Every objective's loss is a function of the per-row sequence log-probs, so by the chain rule

    g_i = Σ_r u_{i,r} ∇_θ log π(r),      u_{i,r} = ∂L_i / ∂ log π(r)   (known right after the forward).

Rows do not interact inside the network, so one backward of Σ_r log π(r) gives, at every module, the
output gradient δ_{r,t} = ∂ log π(r)/∂ out_{r,t} of each row's own log-prob. What each trainable
parameter class gets:

* ``nn.Linear`` weight (full fine-tuning, LoRA ``lora_A``/``lora_B``, an untied or tied LM head):
  closed form G_i = Σ_{r,t} u_{i,r} δ_{r,t} x_{r,t}ᵀ from the captured input x — one batched matmul with a
  k-sized batch dimension, the u-scaling applied to the smaller of (in, out) (LoRA's rank-r side).
  Its bias: Σ_{r,t} u_{i,r} δ_{r,t}. Computed inside the backward hook, so x is released at once.
* any other module owning trainable parameters directly (embeddings, RMSNorm/LayerNorm weights, ...):
  an exact local vector-Jacobian product — the module is re-run on its captured (detached) inputs and
  differentiated w.r.t. its own parameters with cotangent u_{i,r} δ_r, once per objective. These
  modules are cheap (elementwise or a gather), and must be deterministic (no dropout inside them).

During the fused forward/backward the trainable parameters are switched to ``requires_grad=False``;
the output of every module owning trainable parameters that does not otherwise require grad (the input
embeddings, a layer fed only by token ids) is made a graph root instead, so autograd computes
activation gradients only: the weight gradients of the single backward pass are never formed (they are
the k products above).

Where the gradients are formed: every hooked module's output passes through ``_Tap``, an identity
autograd function whose backward receives δ and forms the module's k gradients at once (the closed
form, or the local VJPs reduced to ``[k, *parameter shape]``), so nothing ``[tokens, ...]``-sized
outlives the module's own backward. The tensors it needs (a Linear's input x, a generic module's
inputs) are ``save_for_backward``-ed by the tap, i.e. autograd's saved tensors: under non-reentrant
activation checkpointing they are dropped after the forward and recomputed inside the backward like
every other activation of the checkpointed region (the recomputation forward applies the same taps,
without recording, so that its saved tensors line up with the original's). The fused path's activation
memory therefore follows checkpointing as autograd's own does.

Row mapping: inside the LM head's forward (its pre-hook to its post-hook, wrappers included) inputs are
the ``[N, ...]`` response positions whose rows the caller gave by ``set_head_rows``; elsewhere a
module's inputs must lead with the row dimension ``[R, ...]``, or, for a packed batch (data/packing.py,
rows concatenated into one sequence), with ``[1, N, ...]``, token n of row ``row_ids[n]``
(``set_token_rows``). Anything else is ``FusedPathUnsupported``.

Shared prompt (``model.share_prompt``): the prompts' forward leads with pairs, the backward is seeded
per row and modules weigh pairs (gradients/rows.py: ``recorded_logps`` tells the capture the rows of
each forward, ``pair_seeds`` the weights and seeds).

Guards (each raises ``FusedPathUnsupported``; under ``path: auto`` the engine then uses the plain path):
every trainable parameter must belong to a hooked module (parameters held in ``ParameterDict`` /
``ParameterList`` containers, e.g. peft's ``lora_embedding_A`` or trainable-token deltas, belong to the
module holding the container, which uses them); the closed form is used only for modules whose forward
is ``nn.Linear.forward`` itself (a subclass with its own forward is treated as a generic module); and a
generic module re-run for its VJP must reproduce its recorded output (no dropout or other randomness).

Parameter identity: gradients are keyed by ``id()`` of the trainable parameters as registered when
recording starts (for FSDP2, the sharded DTensors the optimizer steps); hooks find a module's
parameters by attribute name, never by the tensor they meet, because FSDP2 swaps in unsharded tensors
during forward and backward. Those are frozen by a forward pre-hook as they appear, and the modules
re-run for their VJP inside the backward, when FSDP2 has gathered their unit for its own backward.
``sink`` receives every gradient as it is formed (the sharded reducer); by default they are summed
locally. ``complete`` (the engine's ``store="gram"``) receives each parameter's gradient once it is
whole: the recorded forward counts the taps that will send a piece of it (a tied embedding and head,
a head called once per log-prob chunk), the pieces are summed until the last has arrived, then handed
over and dropped, so that per-objective gradients never accumulate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule
from torch.utils.hooks import RemovableHandle

from raco.gradients.store import ParamGrads


class FusedPathUnsupported(RuntimeError):
    """The model has a trainable module whose per-row gradients the fused path cannot form."""


def _in_backward() -> bool:
    return torch._C._current_graph_task_id() != -1


_CONTAINERS = (nn.ParameterDict, nn.ParameterList)


def owned_parameters(module: nn.Module) -> list[nn.Parameter]:
    """The parameters ``module`` uses itself: its own, and those of its parameter containers
    (``ParameterDict``/``ParameterList`` children are never called; their holder uses them)."""
    return [holder._parameters[name] for holder, name in owned_slots(module)]


Slot = tuple[nn.Module, str]  # (the module holding the attribute, its name): the parameter there now


def owned_slots(module: nn.Module) -> list[Slot]:
    """Where the parameters ``module`` uses itself are registered (see ``owned_parameters``)."""
    slots = [(module, name) for name, p in module._parameters.items() if p is not None]
    for child in module.children():
        if isinstance(child, _CONTAINERS):
            slots.extend((holder, name) for holder in child.modules() for name in holder._parameters)
    return slots


def is_plain_linear(module: nn.Module) -> bool:
    """True when the module computes exactly ``F.linear(x, weight, bias)`` (nn.Linear's own forward)."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _checksum(output: Tensor) -> Tensor:
    return output.detach().double().sum()


GradFn = Callable[[Tensor, tuple[Tensor, ...]], None]


class _Tap(torch.autograd.Function):
    """Identity on a module's output: ``saved`` are kept as autograd saved tensors (recomputed under
    activation checkpointing) and ``on_grad(δ, saved)`` runs in the backward, where δ = ∂/∂output
    arrives (None: a recomputation's tap, which only has to save what the original saved)."""

    @staticmethod
    def forward(ctx: Any, on_grad: GradFn | None, output: Tensor, *saved: Tensor) -> Tensor:
        ctx.on_grad, ctx.n_saved = on_grad, len(saved)
        ctx.save_for_backward(*saved)
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, delta: Tensor) -> tuple[Tensor | None, ...]:
        if ctx.on_grad is not None:
            ctx.on_grad(delta, ctx.saved_tensors)
        return (None, delta) + (None,) * ctx.n_saved


RowIndex = Callable[[], Tensor]  # the [N] row of each flattened leading position, formed when needed


def _split_tensors(values: tuple[Any, ...]) -> tuple[list[Tensor], list[Any]]:
    """The tensors among ``values`` (to be saved) and the template with ``None`` in their places."""
    tensors = [v for v in values if isinstance(v, Tensor)]
    return tensors, [None if isinstance(v, Tensor) else v for v in values]


def _fill(template: list[Any], tensors: Iterator[Tensor]) -> list[Any]:
    return [next(tensors) if v is None else v for v in template]


@dataclass
class FusedCapture:
    """Hooks a model so that one backward of Σ_r log π(r) yields ``[k, *shape]`` gradients per parameter.

    Use: ``with capture.recording(n_rows): forward`` (calling ``set_head_rows`` before the LM head runs;
    ``recorded_logps``); then ``capture.set_row_weights(u)`` with ``u [k, R]``; backward of
    ``logps.sum()``; then ``capture.collect()``. With a shared prompt: weights ``p [k, B]`` and the
    backward of Σ_r s_r log π(r) (``row_seeds``).
    """

    model: nn.Module
    head: nn.Module | None
    input_embeddings: nn.Module
    grads: ParamGrads = field(default_factory=dict)
    _u: Tensor | None = None
    _head_rows: Tensor | None = None
    _in_head: bool = False
    _n_rows: int = 0
    _row_map: Tensor | None = None  # the weight column of each leading row (None: row r is column r)
    _token_rows: Tensor | None = None  # a packed batch's row of each token: inputs lead with [1, N]
    _re_running: bool = False  # inside a generic module's re-run for its VJP: hooks stand aside
    _failures: list[str] = field(default_factory=list)
    _frozen: list[nn.Parameter] = field(default_factory=list)
    _unsharded_frozen: list[Tensor] = field(default_factory=list)  # FSDP2's gathered tensors, frozen
    _keys: dict[nn.Module, list[tuple[Slot, int]]] = field(default_factory=dict)  # trainable slots → key
    sink: Callable[[int, Tensor], None] | None = None  # receives every gradient as formed (else summed)
    complete: Callable[[int, Tensor], None] | None = None  # else: receives each parameter's whole gradient
    _pending: dict[int, int] = field(default_factory=dict)  # pieces each parameter still awaits
    _partial: ParamGrads = field(default_factory=dict)  # pieces summed until the last arrives

    def set_head_rows(self, rows: Tensor) -> None:
        """Row index ``[N]`` of the flattened positions the LM head is about to project."""
        self._head_rows = rows

    def set_rows(self, rows: Tensor) -> None:
        """From now on module inputs lead with ``len(rows)`` rows, row j weighed by column ``rows[j]`` of
        ``set_row_weights``' u (by default the ``n_rows`` of ``recording``, row r by column r); a shared
        prompt's forwards (losses/shared_prefix.py) give the pair of each row."""
        self._n_rows, self._row_map = len(rows), rows

    def set_token_rows(self, row_ids: Tensor) -> None:
        """A packed batch (data/packing.py): module inputs lead with ``[1, N]``, token n weighed by column
        ``row_ids[n]`` of u (instead of leading with rows)."""
        self._token_rows = row_ids

    def set_row_weights(self, u: Tensor) -> None:
        """``u [k, R]``: u_{i,r} = ∂L_i/∂ log π(r); must be set before the backward pass."""
        self._u = u.detach()

    @property
    def row_weights(self) -> Tensor:
        """The weights ``set_row_weights`` gave."""
        assert self._u is not None, "set_row_weights has not been called"
        return self._u

    def _rows(self, lead: torch.Size, device: torch.device) -> RowIndex | None:
        """Row index ``[N]`` of each element of a module input's flattened leading dims (formed in the
        backward, when needed); None when the shape cannot be mapped (fatal only if a gradient reaches
        that output: see ``_unmappable``)."""
        if self._in_head:
            head_rows = self._head_rows
            if head_rows is not None and tuple(lead) == (len(head_rows),):
                return lambda: head_rows
        elif self._token_rows is not None:
            token_rows = self._token_rows
            if tuple(lead[:2]) == (1, len(token_rows)):
                per_token = int(torch.Size(lead[2:]).numel())
                return lambda: token_rows.to(device).repeat_interleave(per_token)
        elif len(lead) >= 1 and lead[0] == self._n_rows:
            n_rows, per_row, row_map = self._n_rows, int(torch.Size(lead[1:]).numel()), self._row_map
            if row_map is not None:
                return lambda: row_map.to(device).repeat_interleave(per_row)
            return lambda: torch.arange(n_rows, device=device).repeat_interleave(per_row)
        return None

    def _unmappable(self, module: nn.Module, lead: tuple[int, ...]) -> None:
        """A gradient reached a module output whose elements are not rows: remembered, raised by collect
        (raising inside the backward would leave autograd mid-pass)."""
        self._failures.append(
            f"cannot map the inputs {lead} of {type(module).__name__} to rows (a module shared across "
            "rows, e.g. learned position embeddings broadcast over the batch, or tokens flattened across "
            "rows)"
        )

    def _expect(self, keys: list[int | None]) -> None:
        """A recorded tap will send one piece of each of ``keys``' gradients (``complete`` mode)."""
        for key in keys:
            if key is not None:
                self._pending[key] = self._pending.get(key, 0) + 1

    def _accumulator(self, key: int) -> Tensor | None:
        """The float32 tensor a further piece of ``key``'s gradient is summed into, when there is one
        (the locally summed store, or ``complete`` mode's partial sum; never a ``sink``'s): a Linear
        then accumulates its product into it in place (``baddbmm_``), forming no ``[k, *shape]``
        temporary — e.g. per log-prob chunk into the LM head's ``[k, V, h]``."""
        if self.complete is not None:
            return self._partial.get(key)
        return self.grads.get(key) if self.sink is None else None

    def _add(self, key: int, grad: Tensor | None) -> None:
        """One piece of ``key``'s gradient: ``grad``, or None when it was summed into ``_accumulator``."""
        if grad is None:
            if self.complete is not None:
                self._settle(key, self._partial.pop(key))
            return
        grad = grad.to(torch.float32)
        if self.complete is not None:
            self._settle(key, self._partial.pop(key).add_(grad) if key in self._partial else grad)
        elif self.sink is not None:
            self.sink(key, grad)
        elif key in self.grads:
            self.grads[key].add_(grad)
        else:
            self.grads[key] = grad

    def _settle(self, key: int, grad: Tensor) -> None:
        """``complete`` mode: the pieces of a parameter used by several taps (tied, chunked head) are
        summed until the last has arrived; then the whole gradient goes to ``complete``."""
        self._pending[key] -= 1
        if self._pending[key] > 0:
            self._partial[key] = grad
        else:
            assert self.complete is not None
            self.complete(key, grad)

    def _key(self, module: nn.Module, name: str) -> int | None:
        """The gradient key of ``module``'s trainable parameter ``name`` (None when it has none)."""
        return next(
            (key for (holder, n), key in self._keys.get(module, ()) if holder is module and n == name), None
        )

    def _linear_grads(
        self, module: nn.Linear, rows: RowIndex | None, delta: Tensor, saved: tuple[Tensor, ...]
    ) -> None:
        assert self._u is not None, "set_row_weights must be called before backward"
        (x,) = saved
        if rows is None:
            self._unmappable(module, tuple(x.shape[:-1]))
            return
        x2 = x.detach().reshape(-1, x.shape[-1])
        d2 = delta.reshape(-1, delta.shape[-1]).to(x2.dtype)
        w = self._u[:, rows()].to(x2.dtype)  # [k, N]
        weight, bias = self._key(module, "weight"), self._key(module, "bias")
        with torch.no_grad():
            if weight is not None:
                k, n = w.shape
                if d2.shape[1] <= x2.shape[1]:  # scale the smaller side (LoRA: rank r)
                    lhs, rhs = (w.unsqueeze(-1) * d2).transpose(1, 2), x2.expand(k, n, x2.shape[1])
                else:
                    lhs, rhs = d2.t().expand(k, d2.shape[1], n), w.unsqueeze(-1) * x2
                into = self._accumulator(weight)
                if into is not None and into.dtype == lhs.dtype:
                    into.baddbmm_(lhs, rhs)  # G_i += (u_i δ)ᵀ x in place
                    self._add(weight, None)
                else:
                    self._add(weight, torch.bmm(lhs, rhs))
            if bias is not None:
                self._add(bias, w @ d2)

    @staticmethod
    def _as_root(output: Tensor) -> Tensor:
        """With the parameters frozen, an output that needs no grad is where this module's δ starts."""
        return output if output.requires_grad else output.detach().requires_grad_(True)

    def _recording_forward(self, module: nn.Module) -> bool:
        """True for the forward being recorded; False inside backward (checkpoint recomputation)."""
        if _in_backward():
            return False
        if not torch.is_grad_enabled():
            raise FusedPathUnsupported(
                f"{type(module).__name__} ran without autograd during the recorded forward (reentrant "
                "gradient checkpointing?); use the non-reentrant variant"
            )
        return True

    def _on_embeddings_forward(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Any:
        if self._re_running or not self._recording_forward(module):
            return None
        return self._as_root(output)

    def _on_linear_forward(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor | None:
        if self._re_running:
            return None
        x = inputs[0]
        if not self._recording_forward(module):  # a checkpoint's recomputation: save what was saved
            return _Tap.apply(None, self._as_root(output), x)
        rows = self._rows(x.shape[:-1], x.device)
        self._expect([self._key(module, "weight"), self._key(module, "bias")])
        on_grad: GradFn = lambda delta, saved: self._linear_grads(module, rows, delta, saved)  # noqa: E731
        return _Tap.apply(on_grad, self._as_root(output), x)

    def _on_local_forward(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> Any:
        if self._re_running:
            return None
        if not isinstance(output, Tensor):
            if not self._recording_forward(module):
                return None
            raise FusedPathUnsupported(f"{type(module).__name__} returns {type(output).__name__}")
        names = list(kwargs)
        tensors, template = _split_tensors((*args, *kwargs.values()))
        if not self._recording_forward(module):
            return _Tap.apply(None, self._as_root(output), *tensors)
        lead = self._row_lead(output)
        rows, checksum, n_args = self._rows(output.shape[:lead], output.device), _checksum(output), len(args)
        self._expect([key for _, key in self._keys[module]])

        def on_grad(delta: Tensor, saved: tuple[Tensor, ...]) -> None:
            values = _fill(template, (t.detach() for t in saved))
            self._local_grads(
                module,
                values[:n_args],
                dict(zip(names, values[n_args:], strict=True)),
                rows,
                checksum,
                delta,
                lead,
            )

        return _Tap.apply(on_grad, self._as_root(output), *tensors)

    def _row_lead(self, output: Tensor) -> int:
        """How many leading dimensions of a generic module's output index rows: 2 for ``[1, N, ...]``
        of a packed batch (``set_token_rows``), else 1 (``[R, ...]``)."""
        token_rows = self._token_rows
        if token_rows is not None and not self._in_head and tuple(output.shape[:2]) == (1, len(token_rows)):
            return 2
        return 1

    def _local_grads(
        self,
        module: nn.Module,
        args: list[Any],
        kwargs: dict[str, Any],
        rows: RowIndex | None,
        checksum: Tensor,
        delta: Tensor,
        lead: int = 1,
    ) -> None:
        """k gradients of ⟨u_i δ, module(x)⟩ w.r.t. the module's own parameters, formed at once: the
        module is re-run on its (saved or recomputed) inputs and differentiated, once per objective
        (u indexed by the rows of δ's ``lead`` leading dimensions: ``_row_lead``)."""
        assert self._u is not None, "set_row_weights must be called before backward"
        if rows is None:
            self._unmappable(module, tuple(delta.shape[:1]))
            return
        keyed = self._keys[module]
        params = [holder._parameters[name] for (holder, name), _ in keyed]
        k = self._u.shape[0]
        w = self._u[:, rows()].to(delta.dtype)
        w = w.reshape(w.shape[:1] + delta.shape[:lead] + (1,) * (delta.dim() - lead))
        # an FSDP2 unit itself is re-run without its hooks (FSDP2 has gathered it for its backward)
        run = module.forward if isinstance(module, FSDPModule) else module
        frozen = [p for p in params if p is not None and not p.requires_grad]
        self._re_running = True
        try:
            for p in frozen:
                p.requires_grad_(True)
            with torch.enable_grad():
                out = run(*args, **kwargs)
                if not torch.allclose(_checksum(out), checksum, rtol=1e-6, atol=1e-30, equal_nan=True):
                    self._failures.append(
                        f"{type(module).__name__} gives a different output when re-run on the same "
                        "inputs (dropout or other randomness inside it)"
                    )
                    return
                per_objective = [
                    torch.autograd.grad(out, params, delta * w[i], retain_graph=i < k - 1) for i in range(k)
                ]
        finally:
            for p in frozen:
                p.requires_grad_(False)
            self._re_running = False
        for j, (_, key) in enumerate(keyed):
            self._add(key, torch.stack([g[j] for g in per_objective]))

    def _freeze_gathered(self, module: nn.Module, *_: Any) -> None:
        """Forward pre-hook: freeze the tensors now in ``module``'s trainable slots (FSDP2's unsharded
        parameters are not the sharded ones frozen by ``recording``), so no weight gradient is formed."""
        if self._re_running:
            return
        for (holder, name), _key in self._keys[module]:
            t = holder._parameters[name]
            if t is not None and t.requires_grad:
                t.requires_grad_(False)
                self._unsharded_frozen.append(t)

    def _hook_modules(self) -> list[RemovableHandle]:
        """Hook every module that uses trainable parameters; every trainable parameter must be covered."""
        handles: list[RemovableHandle] = []
        trainable = {id(p) for p in self._frozen}
        self._keys = {}
        for module in self.model.modules():
            if isinstance(module, _CONTAINERS):
                continue
            own = [(slot, id(slot[0]._parameters[slot[1]])) for slot in owned_slots(module)]
            own = [(slot, key) for slot, key in own if key in trainable]
            if not own:
                if module is self.input_embeddings:  # the graph's root: every layer's output needs grad
                    handles.append(module.register_forward_hook(self._on_embeddings_forward))
                continue
            self._keys[module] = own
            linear = is_plain_linear(module) and all(
                holder is module and name in ("weight", "bias") for (holder, name), _ in own
            )
            hook = self._on_linear_forward if linear else self._on_local_forward
            handles.append(module.register_forward_pre_hook(self._freeze_gathered))
            handles.append(module.register_forward_hook(hook, with_kwargs=not linear))
        covered = {key for own in self._keys.values() for _, key in own}
        orphans = [n for n, p in self.model.named_parameters() if id(p) in trainable - covered]
        if orphans:
            for h in handles:
                h.remove()
            raise FusedPathUnsupported(
                f"trainable parameters no module uses directly (e.g. {orphans[:3]}): their per-row "
                "gradients cannot be captured"
            )
        return handles

    def _phase_hooks(self) -> list[RemovableHandle]:
        """Mark the LM head's forward (registered last, so the other hooks run inside the phase)."""
        if self.head is None:
            return []

        def enter(*_: Any) -> None:
            self._in_head = True

        def leave(*_: Any) -> None:
            self._in_head = False

        return [self.head.register_forward_pre_hook(enter), self.head.register_forward_hook(leave)]

    @contextmanager
    def recording(self, n_rows: int) -> Iterator[None]:
        """Freeze trainable parameters and hook modules for one fused forward + backward."""
        self._frozen = [p for p in self.model.parameters() if p.requires_grad]
        self._unsharded_frozen = []
        self._n_rows, self._row_map, self.grads, self._head_rows, self._u = n_rows, None, {}, None, None
        self._token_rows = None
        self._failures, self._pending, self._partial = [], {}, {}
        self._in_head = self._re_running = False
        handles = self._hook_modules() + self._phase_hooks()
        for p in self._frozen:
            p.requires_grad_(False)
        try:
            yield
        except RuntimeError as err:
            if "of _Tap is a view" not in str(err):
                raise
            raise FusedPathUnsupported(
                "the model modifies a hooked module's output in place, which the capture's taps (views "
                "made by an autograd function) do not allow"
            ) from err
        finally:
            for h in handles:
                h.remove()
            for p in self._frozen + self._unsharded_frozen:
                p.requires_grad_(True)
            self._in_head = False

    def collect(self) -> ParamGrads:
        """After the backward: the per-parameter ``[k, *shape]`` gradients (float32) formed during it,
        keyed by ``id(parameter)`` (empty when a ``sink`` or ``complete`` took them; ``complete`` is
        given the parameters some of whose taps got no gradient now); raises what the backward found."""
        failures, self._failures = self._failures, []
        if failures:
            raise FusedPathUnsupported(failures[0])
        partial, self._partial = self._partial, {}
        if self.complete is not None:
            for key, grad in partial.items():
                self.complete(key, grad)
        return self.grads
