"""PointPrompt (olivesgatech/PointPrompt) as released: its feature table, and its other parts
in sibling modules. Pure: numpy / scipy / OpenCV / scikit-image / scikit-learn, no Django."""
