"""Renderers: one module per output format, all reading the same frozen data model."""
