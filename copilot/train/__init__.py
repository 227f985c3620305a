"""Training and ONNX export recipes (needs the ``train`` extra: torch, onnx). Run ``python -m copilot.train NAME``.

Only modules that need torch import it, and only inside the functions that use it, so ``copilot.train.data`` and
``copilot.train.metrics`` work without the extra.
"""
