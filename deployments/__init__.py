"""Ray Serve glue: one Serve application per service plus the gateway, sharing one HTTP stack."""
