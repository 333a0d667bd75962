"""Local Ray cluster lifecycle and job submission."""
