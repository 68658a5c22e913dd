"""reportgen: what LoRA trains, for any causal LM, from its config alone, proved twice."""

__version__ = "0.1.0"
