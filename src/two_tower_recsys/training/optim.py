"""LazyAdam: Adam that updates only the embedding rows a batch touched.

A batch of 4096 pairs touches a few thousand of the 165k user and movie rows. Dense Adam reads
and writes all 165k x 64 parameters and both moment buffers every step; on CPU that memory
traffic costs more than the loss itself. For parameters with sparse gradients
(``nn.Embedding(sparse=True)``) this optimizer updates the touched rows' moments and weights
only (the "lazy" Adam of TensorFlow Addons and torch's SparseAdam); parameters with dense
gradients (e.g. the movie table under full softmax, where every row gets a gradient) get the
ordinary Adam update. Unlike SparseAdam it accepts both in one optimizer, so Lightning's
automatic optimisation keeps working.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch


class LazyAdam(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ):
        if lr <= 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
                state["step"] += 1
                step_size = group["lr"] / (1 - beta1 ** state["step"])
                bias_correction2_sqrt = math.sqrt(1 - beta2 ** state["step"])
                update = _sparse_update if param.grad.is_sparse else _dense_update
                update(param, param.grad, state, beta1, beta2, group["eps"], step_size, bias_correction2_sqrt)
        return loss


def _dense_update(param, grad, state, beta1, beta2, eps, step_size, bias_correction2_sqrt) -> None:
    exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denominator = exp_avg_sq.sqrt().div_(bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg, denominator, value=-step_size)


def _sparse_update(param, grad, state, beta1, beta2, eps, step_size, bias_correction2_sqrt) -> None:
    grad = grad.coalesce()  # one row per index: repeated ids in a batch are summed
    rows = grad.indices()[0]
    values = grad.values()
    exp_avg_rows = state["exp_avg"][rows].lerp_(values, 1 - beta1)
    exp_avg_sq_rows = state["exp_avg_sq"][rows].mul_(beta2).addcmul_(values, values, value=1 - beta2)
    state["exp_avg"][rows] = exp_avg_rows
    state["exp_avg_sq"][rows] = exp_avg_sq_rows
    denominator = exp_avg_sq_rows.sqrt_().div_(bias_correction2_sqrt).add_(eps)
    param.index_add_(0, rows, exp_avg_rows.div_(denominator).mul_(-step_size))
