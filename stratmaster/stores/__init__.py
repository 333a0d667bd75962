"""Storage backends: one Protocol per kind, an embedded default and a server adapter each."""
