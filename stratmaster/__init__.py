"""StratMaster domain library: free of Ray, unit-testable without a cluster."""

__version__ = "0.1.0"
