"""make validate-memory: the estimate against CPU measurements and published GPU runs -> benchmarks/MEMORY.md.

Also writes reportgen/memory_checks/summary.json, which every report quotes in its memory section.
"""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

from reportgen.memory_measure import CASES, compare
from reportgen.memory_validation import check_runs, load_runs, memory_markdown, summarise, write_summary

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    measurements = tuple(compare(case) for case in CASES)
    published = load_runs()
    checks = check_runs(published)
    versions = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "peft", "bitsandbytes"))
    (ROOT / "benchmarks" / "MEMORY.md").write_text(memory_markdown(measurements, published, checks, versions),
                                                  encoding="utf-8")
    summary = summarise(measurements, checks, published.band_percent)
    write_summary(summary, ROOT / "reportgen")
    print(summary.cpu_label)
    print(summary.gpu_label)
    print("wrote benchmarks/MEMORY.md and reportgen/memory_checks/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
