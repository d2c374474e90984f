"""llmrec: an LLM-augmented recommendation workbench.

Importing the package is cheap on purpose: heavy libraries (torch, transformers, datasets,
and above all vllm, trl, peft) are imported inside the functions that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
