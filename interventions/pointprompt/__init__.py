"""PointPrompt (olivesgatech/PointPrompt) as released: its feature table (features.py), its
point-selection strategies and benchmark protocol (strategies.py, kmedoids.py, released_names.py)
and the regressions on its features (regression.py); docs/pointprompt.md. Pure: numpy / scipy /
OpenCV / scikit-image / scikit-learn / torch, no Django."""
