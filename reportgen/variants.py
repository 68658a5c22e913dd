"""Method variants: a PEFT method plus options, as ``--methods`` and a study matrix name them (no torch here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UsageError

ALL_LINEAR = "all-linear"  # PEFT's own shorthand: every Linear/Conv1D but the output head
LORA, LOHA, LOKR, VERA, IA3 = "lora", "loha", "lokr", "vera", "ia3"
PARAM_KINDS = ("experts", "param")  # reached through target_parameters (PEFT's ParamWrapper)

# Options each PEFT method accepts here (every one has a closed form below).
METHOD_OPTIONS: dict[str, frozenset[str]] = {
    LORA: frozenset({"use_dora", "use_rslora", "lora_bias", "bias", "modules_to_save", "layers_to_transform",
                     "rank_pattern", "alpha_pattern", "lora_alpha"}),
    LOHA: frozenset({"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern", "alpha"}),
    LOKR: frozenset({"modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern", "alpha"}),
    VERA: frozenset({"modules_to_save", "layers_to_transform", "bias"}),
    IA3: frozenset({"modules_to_save"}),
}
BIAS_MODES = ("none", "lora_only", "all")


@dataclass(frozen=True)
class Variant:
    """A PEFT method with options, under the name its cells carry in ``method``."""

    name: str
    method: str
    options: tuple[tuple[str, Any], ...] = ()

    def get(self, key: str, default: Any = None) -> Any:
        """One option's value, or the default."""
        return dict(self.options).get(key, default)

    @property
    def option_labels(self) -> tuple[tuple[str, str], ...]:
        return tuple((key, str(value)) for key, value in self.options)


BUILTIN_VARIANTS: dict[str, Variant] = {
    "lora": Variant("lora", LORA),
    "dora": Variant("dora", LORA, (("use_dora", True),)),
    "rslora": Variant("rslora", LORA, (("use_rslora", True),)),
    "loha": Variant("loha", LOHA),
    "lokr": Variant("lokr", LOKR),
    "vera": Variant("vera", VERA),
    "ia3": Variant("ia3", IA3),
}
DEFAULT_VARIANTS: tuple[Variant, ...] = (BUILTIN_VARIANTS["lora"],)


def make_variant(name: str, method: str, options: dict[str, Any]) -> Variant:
    """A variant checked against the options its method accepts (UsageError otherwise)."""
    if method not in METHOD_OPTIONS:
        raise UsageError(f"method {name!r}: unknown PEFT method {method!r} (one of: {', '.join(METHOD_OPTIONS)})")
    unknown = sorted(set(options) - METHOD_OPTIONS[method])
    if unknown:
        raise UsageError(
            f"method {name!r}: {method} has no option {', '.join(unknown)} here "
            f"(it accepts: {', '.join(sorted(METHOD_OPTIONS[method]))})"
        )
    if options.get("bias", "none") not in BIAS_MODES:
        raise UsageError(f"method {name!r}: bias must be one of {', '.join(BIAS_MODES)}")
    return Variant(name, method, tuple(sorted(options.items())))


def parse_methods(text: str) -> tuple[Variant, ...]:
    """``lora,dora,loha`` -> the built-in variants of those names (UsageError for an unknown one)."""
    variants: list[Variant] = []
    for name in (part.strip() for part in text.split(",")):
        if name not in BUILTIN_VARIANTS:
            raise UsageError(f"unknown method {name!r} (one of: {', '.join(BUILTIN_VARIANTS)})")
        if BUILTIN_VARIANTS[name] not in variants:
            variants.append(BUILTIN_VARIANTS[name])
    return tuple(variants)
