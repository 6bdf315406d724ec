"""Intervene's science: segmentation backends, metrics, explanations, VOICE, causal curves.

Pure numpy/torch code with no Django imports; submodules are imported on demand.
"""
