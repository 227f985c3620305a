"""The versioned result document (``copilot.result/1``): the one leaf package that ``result.py``, ``publish/``, the
store, the exports and the UI share. Nothing here imports the rest of ``copilot``."""
