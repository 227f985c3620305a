"""Ships the top-level ``engines/`` folder inside the package as ``copilot/_engines`` (package data), so a wheel or a
non-editable install finds the models; see ``copilot/inference/locate.py``. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["copilot", "copilot.*"]), "copilot._engines"],
    package_dir={"copilot._engines": "engines"},
    package_data={"copilot.document": ["*.schema.json"], "copilot.napari_plugin": ["napari.yaml"],
                  "copilot._engines": ["*/card.json", "*/model.onnx", "*/reliability.*"]},
)
