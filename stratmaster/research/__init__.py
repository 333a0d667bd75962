"""Research: a strategy question turned into a cited, verified decision brief by a durable workflow."""
