"""Backend names, importable without loading any backend (the CLI and config use them)."""

AUTO_ORDER = ("tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu")
BACKEND_CHOICES = ("auto", "onnxruntime", *AUTO_ORDER, "torch-cpu", "triton")  # triton: never picked by auto
ALIASES = {"onnxruntime": "onnxruntime-cpu", "ort": "onnxruntime-cpu", "trt": "tensorrt"}
