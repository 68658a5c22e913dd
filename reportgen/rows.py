"""The analysis's rows: a module type of the model (ModuleRow) and a counted cell of the study (Cell).

Part of the data model (reportgen.data re-exports every name here), split out so
that each module stays short. No torch here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

from .formatting import millions


# Where a module lives in the model (ModuleRow.part).
LANGUAGE_MODEL, HEAD = "language model", "head"
OUTPUT_HEAD = "output head"  # lm_head itself: not in the module table (all-linear leaves it out), matched by name

CHECK_LABELS = {True: "agrees", False: "DIFFERS", None: "no rule"}  # the config-derived shape check, in a word


class CellStatus(StrEnum):
    """How a cell was checked; the value is what report.json says."""

    OK = "ok"  # formula and PEFT agree
    MISMATCH = "mismatch"  # they don't: shown, never hidden
    NOT_APPLICABLE = "not_applicable"  # the cell cannot be expressed here (q alone in a fused qkv; PEFT refuses it)
    NO_MATCH = "no_match"  # the scenario's targets name no module of this model


# The cell statuses by their short names, as the stages and tests use them.
OK, MISMATCH, NOT_APPLICABLE, NO_MATCH = CellStatus.OK, CellStatus.MISMATCH, CellStatus.NOT_APPLICABLE, CellStatus.NO_MATCH


def lora_matrix_params(out_features: int, in_features: int, rank: int) -> int:
    """LoRA's closed form for one weight matrix: B (out x r) plus A (r x in) = r * (out + in)."""
    return rank * (out_features + in_features)


@dataclass(frozen=True)
class ModuleRow:
    """One module type of the repeated blocks: every layer's module of that name."""

    tag: str
    role: str  # q, k, v, o, qkv, gate, up, down, gate_up, router, other
    group: str  # attention, mlp, other
    kind: str  # linear, conv1d, experts (a fused 3-D parameter), param (a router's 2-D weight)
    layers: int
    shape: tuple[int, int]  # (out_features, in_features) of one layer's weight
    params: int  # weights of all layers (experts included), biases not counted
    bias_params: int
    experts: int  # 1 unless the weight is a fused (experts, out, in) parameter
    expected_shape: tuple[int, int] | None  # derived from the config alone
    expected_params: int | None
    peft_target: str  # the name that selects exactly these modules in PEFT
    path: str = ""  # inside a layer, as PEFT keys it: "self_attn.q_proj", "mlp.experts.gate_up_proj", "mlp.gate.weight"
    layer_prefix: str = ""  # the module list holding the layers: "model.layers", "transformer.h"
    layer_indices: tuple[int, ...] = ()  # the layers that hold this module (none outside the repeated blocks)
    part: str = LANGUAGE_MODEL  # where it lives: language model, head, projector, vision tower, audio tower

    @property
    def millions(self) -> float:
        return millions(self.params)

    @property
    def agrees(self) -> bool | None:
        """Whether the measured shape and count equal the config-derived ones (None: no rule)."""
        if self.expected_params is None:
            return None
        return self.expected_shape == self.shape and self.expected_params == self.params

    @property
    def shape_label(self) -> str:
        out_features, in_features = self.shape
        prefix = f"{self.experts} x " if self.experts > 1 else ""
        return f"{prefix}{out_features} x {in_features}"

    @property
    def expected_shape_label(self) -> str:
        """The config-derived shape as "out x in", or "-" where no rule derives it."""
        if self.expected_shape is None:
            return "-"
        prefix = f"{self.experts} x " if self.experts > 1 else ""
        return f"{prefix}{self.expected_shape[0]} x {self.expected_shape[1]}"

    @property
    def check_label(self) -> str:
        """The config-derived check in a word: agrees, DIFFERS, or no rule."""
        return CHECK_LABELS[self.agrees]

    @property
    def check_mark(self) -> str:
        """The check's mark class in the page: ok (agrees), bad (DIFFERS), na (no rule)."""
        return {True: "ok", False: "bad", None: "na"}[self.agrees]

    @property
    def matrix_params(self) -> int:
        """The weights of one layer's matrix (all experts of it): out * in * experts."""
        return self.shape[0] * self.shape[1] * self.experts


@dataclass(frozen=True)
class Cell:
    """One (scenario, rank, method) of the study, counted by formula and by PEFT."""

    scenario: str
    targets: tuple[str, ...]
    rank: int
    method: str
    matrices: int
    targeted_params: int
    formula_trainable: int | None
    peft_trainable: int | None
    percent_of_targeted: float | None
    percent_of_model: float | None
    status: CellStatus
    note: str = ""
    options: tuple[tuple[str, str], ...] = ()  # the method's options beyond its defaults, as text
    scaling: float | None = None  # the adapter's scaling: alpha/r, or alpha/sqrt(r) with rsLoRA
    formula: str = ""  # the closed form, spelled out per module type
    parts: tuple[str, ...] = ()  # the parts of the model the cell adapts (language model, vision tower, ...)

    @property
    def confirmed(self) -> bool:
        return self.status == OK

    @property
    def targeted_millions(self) -> float:
        return millions(self.targeted_params)

    @property
    def applicable(self) -> bool:
        """Whether the scenario selects modules of this model (else note says why not)."""
        return self.status in (OK, MISMATCH)

    @property
    def check_label(self) -> str:
        """How the trainable count was checked: confirmed by PEFT, the disagreement, or why there is none."""
        if self.status == OK:
            return "confirmed by PEFT"
        if self.status == MISMATCH:
            return self.note or f"PEFT counts {self.peft_trainable}, the formula {self.formula_trainable}"
        return self.note or self.status

    @property
    def trainable_millions(self) -> float | None:
        count = self.peft_trainable if self.peft_trainable is not None else self.formula_trainable
        return None if count is None else millions(count)

    @property
    def over_target(self) -> bool:
        """Whether the adapter is larger than the weights it adapts (r*(m+n) > m*n on a small matrix)."""
        return self.percent_of_targeted is not None and self.percent_of_targeted > 100

    @property
    def rank_stabilised(self) -> bool:
        """Whether the cell uses rsLoRA's scaling alpha/sqrt(r)."""
        return ("use_rslora", "True") in self.options

    @property
    def alpha(self) -> float | None:
        """The alpha behind the scaling: scaling*sqrt(r) with rsLoRA, else scaling*r (None without scaling)."""
        if self.scaling is None:
            return None
        return self.scaling * (math.sqrt(self.rank) if self.rank_stabilised else self.rank)

    @property
    def plain_scaling(self) -> float | None:
        """alpha/r: the scaling plain LoRA would use with the same alpha."""
        return None if self.alpha is None else self.alpha / self.rank
