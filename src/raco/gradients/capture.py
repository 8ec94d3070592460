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

Parameter identity: gradients are keyed by ``id()`` of the trainable parameters as registered when
recording starts (for FSDP2, the sharded DTensors the optimizer steps); hooks find a module's
parameters by attribute name, never by the tensor they meet, because FSDP2 swaps in unsharded tensors
during forward and backward. Those are frozen by a forward pre-hook as they appear, and the modules
re-run for their VJP after the backward are unsharded around it (``FSDPModule.unshard``). ``sink``
receives every gradient as it is formed (the sharded reducer); by default they are summed locally.
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


@contextmanager
def _unsharded(unit: nn.Module | None) -> Iterator[None]:
    """Gather an FSDP2 unit's parameters for the duration (a collective: every rank calls it)."""
    if not isinstance(unit, FSDPModule):
        yield
        return
    unit.unshard()
    try:
        yield
    finally:
        unit.reshard()


def _fsdp_owners(model: nn.Module) -> dict[nn.Module, FSDPModule]:
    """For every module inside an FSDP2 unit: the innermost unit (the one whose parameters it uses)."""
    units = {name: m for name, m in model.named_modules() if isinstance(m, FSDPModule)}
    owners: dict[nn.Module, FSDPModule] = {}
    for name, module in model.named_modules():
        inside = [u for u in units if u == "" or name == u or name.startswith(u + ".")]
        if inside:
            owners[module] = units[max(inside, key=len)]
    return owners


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
    _unsharded_frozen: list[Tensor] = field(default_factory=list)  # FSDP2's gathered tensors, frozen
    _keys: dict[nn.Module, list[tuple[Slot, int]]] = field(default_factory=dict)  # trainable slots → key
    sink: Callable[[int, Tensor], None] | None = None  # receives every gradient as formed (else summed)

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

    def _add(self, key: int, grad: Tensor) -> None:
        grad = grad.to(torch.float32)
        if self.sink is not None:
            self.sink(key, grad)
        elif key in self.grads:
            self.grads[key].add_(grad)
        else:
            self.grads[key] = grad

    def _key(self, module: nn.Module, name: str) -> int | None:
        """The gradient key of ``module``'s trainable parameter ``name`` (None when it has none)."""
        return next(
            (key for (holder, n), key in self._keys.get(module, ()) if holder is module and n == name), None
        )

    def _linear_grads(self, module: nn.Linear, x: Tensor, rows: Tensor | None, delta: Tensor) -> None:
        assert self._u is not None, "set_row_weights must be called before backward"
        if rows is None:
            self._unmappable(module, tuple(x.shape[:-1]))
            return
        x2 = x.reshape(-1, x.shape[-1])
        d2 = delta.reshape(-1, delta.shape[-1]).to(x2.dtype)
        w = self._u[:, rows].to(x2.dtype)  # [k, N]
        weight, bias = self._key(module, "weight"), self._key(module, "bias")
        with torch.no_grad():
            if weight is not None:
                if d2.shape[1] <= x2.shape[1]:  # scale the smaller side (LoRA: rank r)
                    g = torch.matmul((w.unsqueeze(-1) * d2).transpose(1, 2), x2)
                else:
                    g = torch.matmul(d2.t(), w.unsqueeze(-1) * x2)
                self._add(weight, g)
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

    def _freeze_gathered(self, module: nn.Module, *_: Any) -> None:
        """Forward pre-hook: freeze the tensors now in ``module``'s trainable slots (FSDP2's unsharded
        parameters are not the sharded ones frozen by ``recording``), so no weight gradient is formed."""
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
            for p in self._frozen + self._unsharded_frozen:
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
        owners = _fsdp_owners(self.model) if records else {}
        by_owner: dict[nn.Module | None, list[_LocalRecord]] = {}
        for record in records:  # one unshard per FSDP2 unit, in the same order on every rank
            if record.delta is not None:
                by_owner.setdefault(owners.get(record.module), []).append(record)
        for owner, group in by_owner.items():
            with _unsharded(owner):
                for record in group:
                    keyed = self._keys[record.module]
                    params = [holder._parameters[name] for (holder, name), _ in keyed]
                    for (_, key), g in zip(keyed, self._local_vjp(record, params), strict=True):
                        self._add(key, g)
        return self.grads

    def _local_vjp(self, record: _LocalRecord, params: list[Tensor]) -> list[Tensor]:
        """k gradients of ⟨u_i δ, module(x)⟩ w.r.t. the module's own parameters, stacked per parameter."""
        assert self._u is not None and record.delta is not None
        k = self._u.shape[0]
        w = self._u[:, record.rows].to(record.delta.dtype)
        w = w.reshape(w.shape + (1,) * (record.delta.dim() - 1))
        # an FSDP2 unit itself is re-run without its hooks (it is unsharded around this call already)
        run = record.module.forward if isinstance(record.module, FSDPModule) else record.module
        with torch.enable_grad():
            out = run(*record.args, **record.kwargs)
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
