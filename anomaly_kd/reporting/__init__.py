"""Results files and tables."""
