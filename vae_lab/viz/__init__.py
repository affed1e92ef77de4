"""Pictures of what a model learned, and the Lightning callbacks that log them."""
