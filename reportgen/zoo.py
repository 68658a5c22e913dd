"""The zoo: every causal-LM model type of the installed transformers, from transformers' own default config.

``make zoo`` and the zoo sweep test run reportgen over it. A model type's
default config (``AutoConfig.for_model(model_type)``) is mostly its flagship
(DeepSeek-V3, Qwen3-Next, Llama-4, ...); it is written to ``<type>/config.json``
with ``architectures`` set from transformers' causal-LM mapping, exactly as a
user would bring it.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import one_line

if TYPE_CHECKING:
    from .data import ModelFailure, RunResult

BUILD_FAILURE = "transformers cannot build this"  # build.py's words for transformers' own failure


@dataclass(frozen=True)
class ZooEntry:
    """One model type of the causal-LM mapping: its config.json, or why transformers has no default config."""

    model_type: str
    architecture: str
    path: Path | None
    error: str = ""  # transformers' own message when it cannot create the default config


def causal_lm_types() -> dict[str, str]:
    """model_type -> causal-LM class name, as the installed transformers maps them."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return dict(sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.items()))


def write_zoo(folder: Path, model_types: list[str] | None = None) -> list[ZooEntry]:
    """Write each model type's default config to folder/<type>/config.json (all of the mapping's by default)."""
    from transformers import AutoConfig
    from transformers.utils import logging as transformers_logging

    mapping = causal_lm_types()
    entries: list[ZooEntry] = []
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # type: ignore[no-untyped-call]  # default configs warn about their tokens
    try:
        for model_type in model_types if model_types is not None else list(mapping):
            architecture = mapping[model_type]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    config = AutoConfig.for_model(model_type).to_dict()
            except Exception as exc:  # transformers raises what it likes for a config it cannot default
                entries.append(ZooEntry(model_type, architecture, None, one_line(f"{type(exc).__name__}: {exc}")))
                continue
            config["architectures"] = [architecture]
            path = folder / model_type / "config.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(config, indent=1, sort_keys=True, default=str), encoding="utf-8")
            entries.append(ZooEntry(model_type, architecture, path))
    finally:
        transformers_logging.set_verbosity(verbosity)
    return entries


def sweep(
    folder: Path, jobs: int, model_types: list[str] | None = None, merge_budget: float | None = None
) -> tuple[list[ZooEntry], RunResult, dict[str, float]]:
    """The zoo written to folder and run through the pipeline: entries, the run, seconds per type.

    With ``merge_budget`` (GiB, the whole run's) every model's merge check runs on CPU too; else none does.
    """
    from .pipeline import Progress, Study, run
    from .resolve import ModelSpec

    entries = write_zoo(folder, model_types)
    specs = [ModelSpec(str(entry.path), f"zoo:{entry.model_type}") for entry in entries if entry.path]
    seconds: dict[str, float] = {}

    def ended(model: str, ok: bool, took: float) -> None:
        seconds[Path(model).parent.name] = took

    study = Study(merge_check=merge_budget is not None, merge_budget=merge_budget, device="cpu")
    result = run(specs, study, progress=Progress(on_model_end=ended), jobs=jobs)
    return entries, result, seconds


def is_build_failure(failure: ModelFailure) -> bool:
    """Whether transformers itself could not build the model from its default config."""
    return BUILD_FAILURE in failure.error
