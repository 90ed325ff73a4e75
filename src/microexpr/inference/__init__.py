"""Using a trained model: the full-data model's card (``card``), a new clip's frames, key frames and features
(``clip``), prediction and its figure (``predict``), and the ``microexpr predict`` command (``cli``).

docs/predict.md explains the whole path.
"""
