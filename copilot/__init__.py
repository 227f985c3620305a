"""Microscope co-pilot: live segmentation, measurement and reliability beside an electron microscope."""

__version__ = "0.1.0"

__all__ = ["analyze_image", "read_results"]


def __getattr__(name: str):
    """``copilot.analyze_image`` / ``copilot.read_results`` (copilot.api), imported on first use: ``import copilot``
    stays light for the daemon and the CLI."""
    if name in __all__:
        from copilot import api

        return getattr(api, name)
    raise AttributeError(f"module 'copilot' has no attribute {name!r}")
