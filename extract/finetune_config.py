"""The settings of a fine-tuning run (``FinetuneConfig``), below the modules that use them:
``extract.finetune`` (the flow), ``extract.lora`` (the training) and ``extract.prequential``
(the EDL record)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from extract.budget import check_token_budget, train_values_per_token
from landscape import store

# Linear warm-up that starts above zero, so the first update already moves the model (a step at
# learning rate 0 would code the second batch with the base model too), then cosine decay to 0
# (``extract.lora.lr_multiplier``).
LR_SCHEDULE = "warm-up (s + 1) / (W + 1) for steps s < W, then cosine from 1 to 0"


@dataclass(frozen=True)
class FinetuneConfig:
    """Every setting of a fine-tuning run (defaults: Doimo et al. where they fit a CPU)."""

    name: str = "sft"  # the condition written to hidden.h5
    labels: str = "true"  # "true" or "random" (uniform random letters: the label-noise control)
    rank: int = 64
    alpha: int = 16
    dropout: float = 0.1
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lr: float = 1e-4
    epochs: int = 2  # the paper trains 4; 2 keeps `make all` near half an hour on 2 cores
    batch_size: int = 16
    warmup: float = 0.05  # fraction of the steps
    seed: int = 0
    checkpoints: tuple[int, ...] = ()  # steps whose adapters are kept and extracted as <name>@step<k>
    schedule: str = "online"  # "online" (one pass) or "blockwise" (Voita & Titov 2020: retrain per block)
    save_every: int = 10  # steps between resume states
    # padded tokens per micro-batch (gradients accumulated over a batch); None: micro_tokens_for
    micro_tokens: int | None = None
    batch_extract: int = 8  # rows a batch of the fine-tuned states' extraction without a token budget
    token_budget: int | str = "auto"  # that extraction's tokens a batch (extract.budget; not a training setting)
    device: str = "auto"
    device_map: str | None = None  # split the model over GPUs / cpu (models.parse_device_map; no disk)
    dtype: str = "auto"
    store_dtype: str = "float32"  # how hidden.h5 keeps the fine-tuned states (store.encoding.STORE_DTYPES)
    task_data: str | None = None  # the task's data file, when not where the run found it

    def validate(self) -> None:
        if self.schedule not in ("online", "blockwise"):
            raise ValueError(f"schedule must be 'online' or 'blockwise', got {self.schedule!r}")
        if self.labels not in ("true", "random"):
            raise ValueError(f"labels must be 'true' or 'random', got {self.labels!r}")
        for name in ("rank", "alpha", "epochs", "batch_size", "save_every", "batch_extract", "micro_tokens"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.lr > 0 or not math.isfinite(self.lr):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.warmup < 1:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")
        if any(k < 1 for k in self.checkpoints):
            raise ValueError("checkpoint steps must be >= 1")
        check_token_budget(self.token_budget)
        if self.store_dtype not in store.encoding.STORE_DTYPES:
            raise ValueError(
                f"unknown store dtype {self.store_dtype!r} (known: {', '.join(store.encoding.STORE_DTYPES)})"
            )
        if "@" in self.name or "/" in self.name or not self.name:
            raise ValueError(f"bad condition name {self.name!r}")

    def training_settings(self) -> dict:
        """What decides the training numbers (a resume state must match it)."""
        keep = (
            "labels",
            "rank",
            "alpha",
            "dropout",
            "targets",
            "lr",
            "epochs",
            "batch_size",
            "warmup",
            "seed",
            "schedule",
            "micro_tokens",
        )
        settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k in keep}
        return {**settings, "lr_schedule": LR_SCHEDULE}


# SmolLM2-135M's micro-batch: 2,048 padded tokens, and its activations a token, blocks x (34 x
# width + 5 x MLP width) float32 values kept for the backward pass (30 x (34 x 576 + 5 x 1536)).
REFERENCE_TOKENS = 2048
REFERENCE_ACTIVATIONS = 30 * (34 * 576 + 5 * 1536)


def micro_tokens_for(model_config) -> int:
    """The default micro-batch of a model (``FinetuneConfig.micro_tokens`` None): 2,048 padded
    tokens for SmolLM2-135M's size and smaller ones, fewer in proportion to a larger model's
    activations a token, in steps of 64 (Qwen2.5-Coder-1.5B: 576). With 2,048, a 1.5B model's
    fine-tune was killed at 23 GB on a 24 GB machine; the number used is recorded with the
    fine-tune's settings, and ``--micro-tokens`` sets it (the gradient of a batch is the same up to
    rounding whatever its micro-batches).

    >>> from types import SimpleNamespace as Config
    >>> micro_tokens_for(Config(num_hidden_layers=28, hidden_size=1536, intermediate_size=8960))
    576
    >>> micro_tokens_for(Config(num_hidden_layers=30, hidden_size=576, intermediate_size=1536))
    2048
    """
    per_token = train_values_per_token(model_config)
    return int(min(REFERENCE_TOKENS, max(64, REFERENCE_TOKENS * REFERENCE_ACTIVATIONS / per_token // 64 * 64)))
