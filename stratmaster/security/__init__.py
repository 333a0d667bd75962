"""Security: role-based access, the audit log, PII detection, encryption at rest, limits."""
