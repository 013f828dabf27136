"""Learning loss (Yoo & Kweon, CVPR 2019): the whole method in one place.

- `LossPredictionModule`: per tapped feature map GAP -> FC(C -> hidden) -> ReLU; concatenate -> FC(-> 1).
  Three ways to run it (`runtime.loss_module`, `MODULE_KINDS`), same parameters and state dict:
  `eager` (one FC per tap), `fused` (the per-tap FCs as one block-diagonal GEMM: fewer kernel launches)
  and `compiled` (module and objective through torch.compile).
- Objectives: `MarginRankingLoss` (the paper's, Sec. 3.3) and `LossMSE` ("learn loss mse", Fig. 4).
- `LearningLoss`: the training hook. Given the tapped features and the per-sample target loss of the
  same forward pass, it returns λ · objective(l̂, l), detaching the features from `detach_epoch` on.
  It always computes in fp32, outside autocast, whatever precision the backbone ran in.
- `build_learning_loss`: the builder from config (`schedule.learning_loss` holds the numbers,
  `sampler.loss_objective` names the objective; baselines have none and train the plain model).
- `ranking_accuracy`: how well the predicted losses order the real ones (paper Fig. 5), exact pair counts.

What is *not* here: the per-sample target loss (the task's `per_sample_loss`), the taps (forward hooks,
`al_runner.models.taps`) and the sampler that ranks by predicted loss (`al_runner.samplers`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.lazy import LazyModuleMixin
from torch.nn.parameter import UninitializedParameter, is_lazy

from al_runner.errors import ConfigError
from al_runner.models.taps import global_average_pool


class LossPredictionModule(nn.Module):
    """Per tapped map: GAP -> FC(C -> hidden) -> ReLU; concatenate -> FC(-> 1) = predicted loss (Sec. 3.2).

    Lazy linear layers take any channel count, and GAP takes any spatial size, so the same module
    attaches to ResNet stages, SSD source maps or hourglass outputs. Call it once on real features
    (`Learner.materialize`) before building the optimizer.
    """

    def __init__(self, num_taps: int, hidden: int = 128):
        super().__init__()
        if num_taps < 1:
            raise ValueError("the loss-prediction module needs at least one tapped layer")
        self.branches = nn.ModuleList(
            nn.Sequential(nn.LazyLinear(hidden), nn.ReLU(inplace=True)) for _ in range(num_taps)
        )
        self.head = nn.Linear(hidden * num_taps, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if len(features) != len(self.branches):
            raise ValueError(f"expected {len(self.branches)} feature maps, got {len(features)}")
        hidden = [branch(global_average_pool(f)) for branch, f in zip(self.branches, features)]
        return self.head(torch.cat(hidden, dim=1)).squeeze(1)

    def objective_value(self, objective: nn.Module, features: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """objective(l̂, l) for one batch: the part `compiled` runs as one graph."""
        return objective(self(features), target)


def pooled_width(feature: torch.Tensor) -> int:
    """C of `global_average_pool(feature)` ([B, C, *spatial] -> C; [B, ...] flattened otherwise)."""
    return feature.shape[1] if feature.dim() > 2 else feature.reshape(feature.shape[0], -1).shape[1]


class FusedLossPredictionModule(LazyModuleMixin, nn.Module):
    """`LossPredictionModule` with its per-tap FC layers as one block-diagonal GEMM.

    GAP per tap, concatenate to [B, ΣC], one FC with the [T·hidden, ΣC] matrix whose block i is tap i's
    FC(C_i -> hidden), ReLU, head: T + 5 kernels forward instead of 3T + 2 (and about half as many
    backward), which is what the module costs where a step is bound by kernel launches (a GPU at batch 128).
    The off-diagonal blocks are multiplied by a 0/1 mask in the forward, so they never get a gradient and
    the function is exactly the per-tap one; only the summation order inside the GEMM differs (fp32 rounding).

    Same initial values as the eager module under the same RNG state (each block is drawn as that tap's
    LazyLinear would be, in tap order), and the same state dict: `branches.<i>.0.weight/bias` + `head.*`,
    so checkpoints load into either kind. Lazy like the eager module: any channel count, any spatial size.
    """

    cls_to_become = None

    def __init__(self, num_taps: int, hidden: int = 128):
        super().__init__()
        if num_taps < 1:
            raise ValueError("the loss-prediction module needs at least one tapped layer")
        self.num_taps, self.hidden = num_taps, hidden
        self.weight = UninitializedParameter()  # [T·hidden, ΣC], block-diagonal
        self.bias = UninitializedParameter()  # [T·hidden]
        self.register_buffer("block_mask", None, persistent=False)
        self.head = nn.Linear(hidden * num_taps, 1)
        self.channels: tuple[int, ...] = ()
        self.register_state_dict_post_hook(_fused_to_per_tap_state)
        self.register_load_state_dict_pre_hook(_per_tap_to_fused_state)

    def initialize_parameters(self, features: list[torch.Tensor]) -> None:
        """First forward: channel counts from the features; each block drawn as tap i's LazyLinear draws it."""
        if self.has_uninitialized_params():
            self._check_taps(features)
            with torch.no_grad():
                blocks = [
                    nn.Linear(pooled_width(f), self.hidden, device=self.weight.device, dtype=self.weight.dtype)
                    for f in features
                ]
                self._materialize([block.in_features for block in blocks])
                self._copy_blocks([b.weight for b in blocks], [b.bias for b in blocks])

    def _check_taps(self, features: list[torch.Tensor]) -> None:
        if len(features) != self.num_taps:
            raise ValueError(f"expected {self.num_taps} feature maps, got {len(features)}")

    def _materialize(self, channels: list[int]) -> None:
        self.channels = tuple(int(c) for c in channels)
        self.weight.materialize((self.num_taps * self.hidden, sum(self.channels)))
        self.bias.materialize((self.num_taps * self.hidden,))
        mask = torch.zeros(self.weight.shape, dtype=torch.bool, device=self.weight.device)
        for rows, cols in self.blocks():
            mask[rows, cols] = True
        self.block_mask = mask

    def blocks(self) -> list[tuple[slice, slice]]:
        """(rows, columns) of each tap's FC inside the fused weight."""
        out, start = [], 0
        for i, c in enumerate(self.channels):
            out.append((slice(i * self.hidden, (i + 1) * self.hidden), slice(start, start + c)))
            start += c
        return out

    @torch.no_grad()
    def _copy_blocks(self, weights: list[torch.Tensor], biases: list[torch.Tensor]) -> None:
        self.weight.zero_()
        for (rows, cols), w, b in zip(self.blocks(), weights, biases):
            self.weight[rows, cols] = w
            self.bias[rows] = b

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        self._check_taps(features)
        pooled = torch.cat([global_average_pool(f) for f in features], dim=1)
        hidden = F.relu(F.linear(pooled, self.weight * self.block_mask, self.bias))
        return self.head(hidden).squeeze(1)

    objective_value = LossPredictionModule.objective_value


def _fused_to_per_tap_state(module: FusedLossPredictionModule, state: dict, prefix: str, _metadata) -> None:
    """state_dict post-hook: the fused weight as the eager module's per-tap keys (copies, not views of it)."""
    if is_lazy(module.weight):
        return
    weight, bias = state.pop(prefix + "weight"), state.pop(prefix + "bias")
    for i, (rows, cols) in enumerate(module.blocks()):
        state[f"{prefix}branches.{i}.0.weight"] = weight[rows, cols].clone()
        state[f"{prefix}branches.{i}.0.bias"] = bias[rows].clone()


def _per_tap_to_fused_state(module: FusedLossPredictionModule, state: dict, prefix: str, *_args) -> None:
    """load_state_dict pre-hook: per-tap keys (either kind's state dict) -> the fused weight and bias."""
    keys = [(f"{prefix}branches.{i}.0.weight", f"{prefix}branches.{i}.0.bias") for i in range(module.num_taps)]
    if not all(w in state and b in state for w, b in keys):
        return  # missing keys are reported by load_state_dict itself
    weights, biases = [state.pop(w) for w, _ in keys], [state.pop(b) for _, b in keys]
    with torch.no_grad():
        if is_lazy(module.weight):
            module._materialize([w.shape[1] for w in weights])
        module._copy_blocks([w.to(module.weight.device) for w in weights], [b.to(module.bias.device) for b in biases])
    state[prefix + "weight"], state[prefix + "bias"] = module.weight.detach().clone(), module.bias.detach().clone()


class CompiledLossPredictionModule(LossPredictionModule):
    """The eager module whose forward, and forward + objective in training, run through torch.compile.

    Compiled once the lazy layers have their shapes (the first, eager, forward gives them); parameters and
    state dict are the eager module's. Inductor fuses the pooling, the small FCs and the ranking loss into
    a few kernels; the first call of each batch shape pays the compilation (seconds to a minute).
    """

    def __init__(self, num_taps: int, hidden: int = 128):
        super().__init__(num_taps, hidden)
        self._compiled: dict[str, object] = {}

    def _compiled_or_eager(self, name: str, eager):
        if any(is_lazy(p) for p in self.parameters()):
            return eager  # the eager call materializes the lazy layers first
        if name not in self._compiled:
            self._compiled[name] = torch.compile(eager)
        return self._compiled[name]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        return self._compiled_or_eager("forward", super().forward)(features)

    def objective_value(self, objective: nn.Module, features: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        eager = functools.partial(_eager_objective_value, self)
        return self._compiled_or_eager("objective", eager)(objective, features, target)


def _eager_objective_value(module: LossPredictionModule, objective, features, target) -> torch.Tensor:
    return objective(LossPredictionModule.forward(module, features), target)


# runtime.loss_module -> the module class (same parameters, initial values and state dict for every kind)
MODULE_KINDS: dict[str, type[nn.Module]] = {
    "eager": LossPredictionModule,
    "fused": FusedLossPredictionModule,
    "compiled": CompiledLossPredictionModule,
}


def split_into_pairs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Disjoint pairs (i, n-1-i) for i < n//2; with odd n the middle sample is left unpaired."""
    first = torch.arange(n // 2)
    return first, n - 1 - first


class MarginRankingLoss(nn.Module):
    """(2/B) Σ_pairs max(0, -s·(l̂_i - l̂_j) + ξ), s = +1 if l_i > l_j else -1 (Sec. 3.3).

    The batch is split into B/2 disjoint pairs; predictions and targets are paired with the *same*
    indices (a public reimplementation permuted only one of them). `target_loss` must be the
    per-sample target loss; it is detached here so the module's loss never reaches the target
    through its label. An odd batch leaves its middle sample unpaired (it still trains the target).
    """

    needs_even_batches = True

    def __init__(self, margin: float = 1.0):
        super().__init__()
        self.margin = margin

    def forward(self, predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
        predicted_loss, target_loss = predicted_loss.flatten(), target_loss.detach().flatten()
        if predicted_loss.shape != target_loss.shape:
            raise ValueError(
                f"shape mismatch: predicted {tuple(predicted_loss.shape)} vs target {tuple(target_loss.shape)}"
            )
        n = predicted_loss.numel()
        if n < 2:
            return predicted_loss.sum() * 0.0
        # The pairs of `split_into_pairs`, (i, n-1-i) for i < n//2, taken by slicing: index tensors built on the
        # host would be copied to the device, and that copy waits for the GPU to finish every queued kernel.
        half = n // 2
        first_p, second_p = predicted_loss[:half], predicted_loss[n - half :].flip(0)
        first_t, second_t = target_loss[:half], target_loss[n - half :].flip(0)
        sign = torch.where(first_t > second_t, 1.0, -1.0).to(predicted_loss.dtype)
        # = mean over the B/2 pairs of max(0, -s·(l̂_i - l̂_j) + ξ), i.e. (2/B) Σ (torch's own margin ranking loss)
        return F.margin_ranking_loss(first_p, second_p, sign, margin=self.margin)


class LossMSE(nn.Module):
    """The paper's "learn loss mse" variant: mean (l̂ - l)²."""

    needs_even_batches = False

    def forward(self, predicted_loss: torch.Tensor, target_loss: torch.Tensor) -> torch.Tensor:
        return torch.mean((predicted_loss.flatten() - target_loss.detach().flatten()) ** 2)


@dataclass
class LearningLoss:
    """How the loss-prediction module trains beside the target: L_target + weight · objective(l̂, l)."""

    objective: nn.Module
    weight: float  # λ
    detach_epoch: int  # from this epoch on the module's gradient no longer reaches the target model
    hidden: int = 128

    def new_module(self, num_taps: int, kind: str = "eager") -> nn.Module:
        """The module, run as `kind` (runtime.loss_module: eager | fused | compiled)."""
        if kind not in MODULE_KINDS:
            raise ConfigError(f"runtime.loss_module={kind} not supported, choose from {', '.join(MODULE_KINDS)}")
        return MODULE_KINDS[kind](num_taps, self.hidden)

    def detaches_at(self, epoch: int) -> bool:
        """From `detach_epoch` on the module keeps learning, the target model gets no gradient from it."""
        return epoch >= self.detach_epoch

    @staticmethod
    def predict(module: LossPredictionModule, features: list[torch.Tensor]) -> torch.Tensor:
        """l̂ in fp32 outside autocast: bf16 would round 1,000 distinct predictions to ~100-160 values."""
        with torch.autocast(features[0].device.type, enabled=False):
            return module(features)  # its pooling returns fp32 from maps of any dtype

    def loss(
        self, module: LossPredictionModule, features: list[torch.Tensor], per_sample_loss: torch.Tensor, epoch: int
    ) -> torch.Tensor:
        """λ · objective(l̂, l) for one batch; l (the task's per-sample loss) is the detached target."""
        if self.detaches_at(epoch):
            features = [f.detach() for f in features]
        with torch.autocast(features[0].device.type, enabled=False):
            # no fp32 copy of the maps: the module's pooling averages them in fp32 (global_average_pool)
            value = module.objective_value(self.objective, features, per_sample_loss.detach().float())
        return self.weight * value


# The objectives a sampler may name in `loss_objective`, and the λ key of `schedule.learning_loss` each uses.
OBJECTIVES = {
    "margin_ranking": (lambda spec: MarginRankingLoss(margin=float(spec.margin)), "weight"),
    "mse": (lambda spec: LossMSE(), "weight_mse"),
}


def fraction_to_epoch(fraction: float, epochs: int, key: str) -> int:
    """A schedule point given as a fraction of the epochs (0.6 of 200 -> 120), so `epochs=50` keeps the shape."""
    fraction = float(fraction)
    if not 0.0 <= fraction <= 1.0 or math.isnan(fraction):
        raise ConfigError(
            f"{key}={fraction} must be a fraction of schedule.epochs in [0, 1] (e.g. 0.6 = 120 of 200 epochs)"
        )
    return int(round(fraction * epochs))


def build_learning_loss(objective_name: str | None, spec, epochs: int, batch_size: int) -> LearningLoss | None:
    """From `sampler.loss_objective` and `schedule.learning_loss`; None for baselines (plain target model)."""
    if objective_name is None:
        return None
    if objective_name not in OBJECTIVES:
        raise ConfigError(
            f"sampler.loss_objective={objective_name} not supported, choose from {', '.join(OBJECTIVES)} (or null)"
        )
    make_objective, weight_key = OBJECTIVES[objective_name]
    objective = make_objective(spec)
    if objective.needs_even_batches and batch_size % 2:
        raise ConfigError(
            f"schedule.batch_size={batch_size} is odd: the margin ranking loss splits each batch into "
            f"B/2 disjoint pairs, so use an even batch size"
        )
    return LearningLoss(
        objective=objective,
        weight=float(spec[weight_key]),
        detach_epoch=fraction_to_epoch(spec.detach_at, epochs, "schedule.learning_loss.detach_at"),
        hidden=int(spec.hidden),
    )


# ---------------------------------------------------------------- evaluation: ranking accuracy (paper Fig. 5)


def ranking_accuracy(predicted: torch.Tensor, real: torch.Tensor, chunk: int = 2048) -> float:
    """Fraction of pairs with distinct real losses whose predicted order matches (paper Fig. 5).

    Each unordered pair is counted once, as the ordered pair (i, j) with real_i > real_j; a
    predicted tie counts as a mismatch. Points whose real loss is NaN belong to no pair.

    Exact pair counts in O(n log² n) time and O(n) memory (sort + merge counting, on the tensors'
    device): 10,000 points take milliseconds. A NaN prediction has no place in a sort order, so then
    the chunked O(n²) count is used instead (`chunk` rows at a time, O(chunk · n) memory).
    """
    predicted, real = predicted.flatten().double(), real.flatten().double()
    if predicted.shape != real.shape:
        raise ValueError("predicted and real must have the same length")
    known = ~torch.isnan(real)
    if not bool(known.all()):
        predicted, real = predicted[known], real[known]
    if bool(torch.isnan(predicted).any()):
        return _ranking_accuracy_pairwise(predicted, real, chunk)
    # valid pairs: for each i, the number of j with real_j < real_i
    valid_total = int(torch.searchsorted(torch.sort(real).values, real).sum())
    if valid_total == 0:
        return float("nan")
    # Order by real ascending, ties by prediction descending; then a matching pair is exactly a pair
    # of positions a < b whose predictions increase strictly (within a tie of real losses they never do).
    order = torch.sort(predicted, descending=True, stable=True).indices
    order = order[torch.sort(real[order], stable=True).indices]
    ranks = torch.unique(predicted, return_inverse=True)[1][order]
    return _count_increasing_pairs(ranks) / valid_total


def _count_increasing_pairs(values: torch.Tensor) -> int:
    """#{(a, b): a < b, values[a] < values[b]} for integers in [0, n), by bottom-up merge counting.

    At width s, each block of 2s positions has a sorted left half; every right-half element counts the
    left-half elements below it with one `searchsorted` over all blocks at once (block-offset keys).
    """
    n = values.numel()
    positions = torch.arange(n, device=values.device)
    stride = n + 1  # > any value: keys block * stride + value sort block-major, then by value
    total, width = 0, 1
    while width < n:
        block = torch.div(positions, 2 * width, rounding_mode="floor")
        right = (positions % (2 * width)) >= width
        keys = block * stride + values  # each width-block of `values` is already sorted
        below = (
            torch.searchsorted(keys[~right], keys[right]) - block[right] * width
        )  # earlier blocks hold `width` left elements each
        total += int(below.sum())
        values = torch.sort(keys).values - block * stride  # merge: each 2·width-block now sorted
        width *= 2
    return total


def _ranking_accuracy_pairwise(predicted: torch.Tensor, real: torch.Tensor, chunk: int = 2048) -> float:
    """The same count over all n² ordered pairs, `chunk` rows at a time (NaN predictions never match)."""
    valid_total = 0
    matching_total = 0
    for start in range(0, real.numel(), chunk):
        r_rows, p_rows = real[start : start + chunk, None], predicted[start : start + chunk, None]
        valid = r_rows > real[None, :]
        valid_total += int(valid.sum())
        matching_total += int((valid & (p_rows > predicted[None, :])).sum())
    return float("nan") if valid_total == 0 else matching_total / valid_total
