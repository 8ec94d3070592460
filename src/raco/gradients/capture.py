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
the k products above). With non-reentrant gradient checkpointing, hooks ignore the recomputation
forward that runs inside backward (the original forward's tensors are the ones differentiated).

Row mapping: inside the LM head's forward (its pre-hook to its post-hook, wrappers included) inputs are
the ``[N, ...]`` response positions whose rows the caller gave by ``set_head_rows``; elsewhere a
module's inputs must lead with the row dimension ``[R, ...]``. Anything else is ``FusedPathUnsupported``.

Guards (each raises ``FusedPathUnsupported``; under ``path: auto`` the engine then uses the plain path):
every trainable parameter must belong to a hooked module (parameters held in ``ParameterDict`` /
``ParameterList`` containers, e.g. peft's ``lora_embedding_A`` or trainable-token deltas, belong to the
module holding the container, which uses them); the closed form is used only for modules whose forward
is ``nn.Linear.forward`` itself (a subclass with its own forward is treated as a generic module); and a
generic module re-run for its VJP must reproduce its recorded output (no dropout or other randomness).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
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
    own = list(module.parameters(recurse=False))
    for child in module.children():
        if isinstance(child, _CONTAINERS):
            own.extend(child.parameters())
    return own


def is_plain_linear(module: nn.Module) -> bool:
    """True when the module computes exactly ``F.linear(x, weight, bias)`` (nn.Linear's own forward)."""
    return isinstance(module, nn.Linear) and type(module).forward is nn.Linear.forward


def _checksum(output: Tensor) -> Tensor:
    return output.detach().double().sum()


class _ParamSet:
    """Membership by identity (``in`` on a list of tensors would compare values)."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self._ids = {id(p) for p in params}

    def __contains__(self, p: object) -> bool:
        return id(p) in self._ids


@dataclass
class _LocalRecord:
    module: nn.Module
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    rows: Tensor | None
    checksum: Tensor
    delta: Tensor | None = None


@dataclass
class FusedCapture:
    """Hooks a model so that one backward of Σ_r log π(r) yields ``[k, *shape]`` gradients per parameter.

    Use: ``with capture.recording(n_rows): forward`` (calling ``set_head_rows`` before the LM head runs);
    then ``capture.set_row_weights(u)`` with ``u [k, R]``; backward of ``logps.sum()``; then
    ``capture.collect()``.
    """

    model: nn.Module
    head: nn.Module | None
    input_embeddings: nn.Module
    grads: ParamGrads = field(default_factory=dict)
    _u: Tensor | None = None
    _head_rows: Tensor | None = None
    _in_head: bool = False
    _n_rows: int = 0
    _locals: list[_LocalRecord] = field(default_factory=list)
    _unmapped: list[str] = field(default_factory=list)
    _frozen: list[nn.Parameter] = field(default_factory=list)
    _frozen_set: _ParamSet = field(default_factory=lambda: _ParamSet([]))

    def set_head_rows(self, rows: Tensor) -> None:
        """Row index ``[N]`` of the flattened positions the LM head is about to project."""
        self._head_rows = rows

    def set_row_weights(self, u: Tensor) -> None:
        """``u [k, R]``: u_{i,r} = ∂L_i/∂ log π(r); must be set before the backward pass."""
        self._u = u.detach()

    def _rows(self, lead: torch.Size, device: torch.device) -> Tensor | None:
        """Row index ``[N]`` of each element of a module input's flattened leading dims; None when the
        shape cannot be mapped (fatal only if a gradient reaches that output: see ``_unmappable``)."""
        if self._in_head:
            if self._head_rows is not None and tuple(lead) == (len(self._head_rows),):
                return self._head_rows
        elif len(lead) >= 1 and lead[0] == self._n_rows:
            per_row = int(torch.Size(lead[1:]).numel())
            return torch.arange(self._n_rows, device=device).repeat_interleave(per_row)
        return None

    def _unmappable(self, module: nn.Module, lead: tuple[int, ...]) -> None:
        """A gradient reached a module output whose elements are not rows: remembered, raised by collect
        (raising inside the backward would leave autograd mid-pass)."""
        self._unmapped.append(
            f"cannot map the inputs {lead} of {type(module).__name__} to rows (a module shared across "
            "rows, e.g. learned position embeddings broadcast over the batch, or tokens flattened across "
            "rows)"
        )

    def _add(self, param: nn.Parameter, grad: Tensor) -> None:
        grad = grad.to(torch.float32)
        if id(param) in self.grads:
            self.grads[id(param)].add_(grad)
        else:
            self.grads[id(param)] = grad

    def _linear_grads(self, module: nn.Linear, x: Tensor, rows: Tensor | None, delta: Tensor) -> None:
        assert self._u is not None, "set_row_weights must be called before backward"
        if rows is None:
            self._unmappable(module, tuple(x.shape[:-1]))
            return
        x2 = x.reshape(-1, x.shape[-1])
        d2 = delta.reshape(-1, delta.shape[-1]).to(x2.dtype)
        w = self._u[:, rows].to(x2.dtype)  # [k, N]
        with torch.no_grad():
            if module.weight in self._frozen_set:
                if d2.shape[1] <= x2.shape[1]:  # scale the smaller side (LoRA: rank r)
                    g = torch.matmul((w.unsqueeze(-1) * d2).transpose(1, 2), x2)
                else:
                    g = torch.matmul(d2.t(), w.unsqueeze(-1) * x2)
                self._add(module.weight, g)
            if module.bias is not None and module.bias in self._frozen_set:
                self._add(module.bias, w @ d2)

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
        return self._as_root(output) if self._recording_forward(module) else None

    def _on_linear_forward(self, module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Tensor | None:
        if not self._recording_forward(module):
            return None
        x = inputs[0].detach()
        rows = self._rows(x.shape[:-1], x.device)
        output = self._as_root(output)
        output.register_hook(lambda delta: self._linear_grads(module, x, rows, delta))
        return output

    def _on_local_forward(
        self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any
    ) -> Any:
        if not self._recording_forward(module):
            return None
        if not isinstance(output, Tensor):
            raise FusedPathUnsupported(f"{type(module).__name__} returns {type(output).__name__}")
        output = self._as_root(output)
        detach = lambda v: v.detach() if isinstance(v, Tensor) else v  # noqa: E731
        record = _LocalRecord(
            module,
            tuple(detach(a) for a in args),
            {k: detach(v) for k, v in kwargs.items()},
            self._rows(output.shape[:1], output.device),
            _checksum(output),
        )
        self._locals.append(record)
        output.register_hook(lambda delta: setattr(record, "delta", delta.detach()))
        return output

    def _hook_modules(self) -> list[RemovableHandle]:
        """Hook every module that uses trainable parameters; every trainable parameter must be covered."""
        handles: list[RemovableHandle] = []
        covered: set[int] = set()  # id() of the parameters hooked so far
        for module in self.model.modules():
            if isinstance(module, _CONTAINERS):
                continue
            own = [p for p in owned_parameters(module) if p in self._frozen_set]
            if not own:
                if module is self.input_embeddings:  # the graph's root: every layer's output needs grad
                    handles.append(module.register_forward_hook(self._on_embeddings_forward))
                continue
            covered.update(id(p) for p in own)
            linear = is_plain_linear(module) and {id(p) for p in own} <= {
                id(module.weight),
                id(module.bias),
            }
            hook = self._on_linear_forward if linear else self._on_local_forward
            handles.append(module.register_forward_hook(hook, with_kwargs=not linear))
        orphans = [
            n for n, p in self.model.named_parameters() if p in self._frozen_set and id(p) not in covered
        ]
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
        self._frozen_set = _ParamSet(self._frozen)
        self._n_rows, self._locals, self.grads, self._head_rows, self._u = n_rows, [], {}, None, None
        self._unmapped = []
        self._in_head = False
        handles = self._hook_modules() + self._phase_hooks()
        for p in self._frozen:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            for p in self._frozen:
                p.requires_grad_(True)
            self._in_head = False

    def collect(self) -> ParamGrads:
        """After the backward and outside ``recording()``: local VJPs of the non-Linear modules.

        Returns per-parameter ``[k, *shape]`` gradients (float32), keyed by ``id(parameter)``."""
        assert self._u is not None
        records, self._locals = self._locals, []
        for record in records:
            if record.rows is None and record.delta is not None:
                self._unmappable(record.module, tuple(record.delta.shape[:1]))
        if self._unmapped:
            raise FusedPathUnsupported(self._unmapped[0])
        for record in records:
            params = [p for p in owned_parameters(record.module) if p in self._frozen_set]
            if params and record.delta is not None:
                for p, g in zip(params, self._local_vjp(record, params), strict=True):
                    self._add(p, g)
        return self.grads

    def _local_vjp(self, record: _LocalRecord, params: list[nn.Parameter]) -> list[Tensor]:
        """k gradients of ⟨u_i δ, module(x)⟩ w.r.t. the module's own parameters, stacked per parameter."""
        assert self._u is not None and record.delta is not None
        k = self._u.shape[0]
        w = self._u[:, record.rows].to(record.delta.dtype)
        w = w.reshape(w.shape + (1,) * (record.delta.dim() - 1))
        with torch.enable_grad():
            out = record.module(*record.args, **record.kwargs)
            again = _checksum(out)
            if not torch.allclose(again, record.checksum, rtol=1e-6, atol=1e-30, equal_nan=True):
                raise FusedPathUnsupported(
                    f"{type(record.module).__name__} gives a different output when re-run on the same "
                    "inputs (dropout or other randomness inside it)"
                )
            per_objective = [
                torch.autograd.grad(out, params, record.delta * w[i], retain_graph=i < k - 1)
                for i in range(k)
            ]
        return [torch.stack([g[j] for g in per_objective]) for j in range(len(params))]
