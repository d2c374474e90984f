"""Data layer: canonical tables (users, items, interactions, dialogues, judgments) on HF
``datasets``, loaders for each supported source, dataset statistics, and leakage-safe splits."""
