"""Export formats written from the prompting log: PointPrompt, tidy tables, COCO."""
