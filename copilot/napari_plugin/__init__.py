"""napari plugin (the ``napari`` extra; manifest ``napari.yaml``): a reader for results folders and a dock widget
that follows a running daemon. ``layers.py`` and ``live.py`` need neither napari nor Qt."""
