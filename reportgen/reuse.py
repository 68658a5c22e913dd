"""A run through the result cache: unchanged models are served from it, the others analysed and stored.

The models whose key is in the cache are written from their stored files (not
rendered again) before any library is loaded; the rest go through the pipeline
as usual, and each one's report and files are stored as soon as its folder is
written. A run where every model is served never imports torch, transformers or
peft. No torch here.
"""

from __future__ import annotations

import datetime
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import CacheKey, Fingerprint, ResultCache, fingerprint, model_key
from .data import MergeStatus, ModelFailure, ModelReport, RunResult
from .folder import Owned
from .output import unique_slugs
from .pipeline import Progress, Study, environment, run
from .quiet import captured
from .render.site import model_files, write_model_files
from .resolve import ModelSpec, resolve

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheUse:
    """What the cache did for a run: the models it served, and why each other one was recomputed."""

    reused: tuple[str, ...] = ()
    recomputed: tuple[tuple[str, str], ...] = ()  # (model, why)


def run_with_cache(specs: Sequence[ModelSpec], study: Study, notes: Sequence[str], progress: Progress, jobs: int,
                   out: Path, owned: Owned | None, cache: ResultCache | None) -> tuple[RunResult, CacheUse]:
    """Every model's report, in models-file order, each model's folder put in place under out (index left to the caller).

    ``owned``: the files reportgen wrote in out before, per folder (``folder.read_manifest``).
    A served model's folder is put in place the same way as a computed one's: staged, then swapped in whole.
    """
    slugs = unique_slugs([spec.text for spec in specs])
    if cache is None:
        finish = functools.partial(write_model_and_store, out=out, owned=owned, cache=None, keys={})
        return run(specs, study, notes, progress, jobs=jobs, finish=finish, slugs=slugs), CacheUse()
    served, served_files, keys, recomputed = _serve(specs, slugs, study, jobs, out, owned, cache, progress)
    missing = [(spec, slug) for spec, slug in zip(specs, slugs) if slug not in served]
    finish = functools.partial(write_model_and_store, out=out, owned=owned, cache=cache, keys=keys)
    computed = run([spec for spec, _ in missing], study, notes, progress, jobs=jobs, finish=finish,
                   slugs=[slug for _, slug in missing])
    by_slug: dict[str, ModelReport | ModelFailure] = {**served}
    by_slug.update({report.slug: report for report in computed.reports})
    by_slug.update({failure.slug: failure for failure in computed.failures})
    outcomes = [by_slug[slug] for slug in slugs]
    result = RunResult(
        reports=tuple(o for o in outcomes if isinstance(o, ModelReport)),
        failures=tuple(o for o in outcomes if isinstance(o, ModelFailure)),
        ranks=study.ranks, environment=environment(), notes=tuple(notes), files=(*served_files, *computed.files),
    )
    return result, CacheUse(tuple(spec.text for spec, slug in zip(specs, slugs) if slug in served), tuple(recomputed))


def _serve(specs: Sequence[ModelSpec], slugs: Sequence[str], study: Study, jobs: int, out: Path,
           owned: Owned | None, cache: ResultCache, progress: Progress,
           ) -> tuple[dict[str, ModelReport], list[str], dict[str, tuple[CacheKey, str]], list[tuple[str, str]]]:
    """Put every model found in the cache in place: the served reports and files, the keys of the others, and why."""
    shared = fingerprint()
    served: dict[str, ModelReport] = {}
    served_files: list[str] = []
    keys: dict[str, tuple[CacheKey, str]] = {}
    recomputed: list[tuple[str, str]] = []
    for spec, slug in zip(specs, slugs):
        start = time.perf_counter()
        key = _key(spec, slug, study, jobs, shared)
        hit = cache.load(key) if key is not None else None
        if key is None or hit is None or hit.report.slug != slug:
            why = "its config cannot be read" if key is None else _why(cache, spec.text, key)
            log.info("%s: recomputed: %s", spec.text, why)
            recomputed.append((spec.text, why))
            if key is not None:
                keys[slug] = (key, spec.text)
            continue
        served_files += write_model_files(out, slug, hit.files, owned)
        served[slug] = hit.report
        log.info("%s: reused from the cache (entry %s)", spec.text, key.digest[:12])
        progress.on_model_reused(spec.text, time.perf_counter() - start)
    return served, served_files, keys, recomputed


def _key(spec: ModelSpec, slug: str, study: Study, jobs: int, shared: Fingerprint) -> CacheKey | None:
    """The model's cache key, or None when its config cannot be resolved (the pipeline then reports why)."""
    try:
        with captured():  # what resolving says is said again, into the report, when the model is analysed
            resolved = resolve(spec)
        code = sorted(resolved.folder.glob("*.py")) if study.trust_remote_code and resolved.folder else []
        return model_key(spec.text, slug, resolved.config, resolved.source, study, jobs, shared, code)
    except Exception as exc:  # any failure here is the pipeline's to report, in its own words
        log.debug("%s: no cache key (%s)", spec.text, exc)
        return None


def _why(cache: ResultCache, model: str, key: CacheKey) -> str:
    """Which part of the key changed since this model line's last stored entry, in words."""
    previous = cache.previous_parts(model)
    if not previous:
        return "not in the cache"
    changed = key.changed_from(previous)
    return f"{', '.join(changed)} changed" if changed else "its cache entry is missing or was not trusted"


def write_model_and_store(report: ModelReport, out: Path, owned: Owned | None, cache: ResultCache | None,
                          keys: dict[str, tuple[CacheKey, str]]) -> list[str]:
    """Put one model's folder in place under out and, with a key for it, keep its report and files in the cache.

    Returns the files written, relative to out. A merge check that stopped with an error may pass next
    time, so that report is not kept.
    """
    files = model_files(report)
    written = write_model_files(out, report.slug, files, owned)
    if cache is not None and report.slug in keys and report.merge_check.status != MergeStatus.ERROR:
        key, model = keys[report.slug]
        created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        try:
            cache.store(key, model, report, files, created)
        except OSError as exc:  # a full or read-only cache costs the next run time, never this run its report
            log.warning("cannot store %s in the cache %s: %s", report.model.id, cache.root, exc)
    return written
