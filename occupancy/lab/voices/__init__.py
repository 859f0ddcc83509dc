"""The distinct-voices stage's release tools: its encoder file, its projection, its scenes and test."""
