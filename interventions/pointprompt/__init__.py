"""PointPrompt as released: features, strategies, benchmark protocol (docs/pointprompt.md)."""
