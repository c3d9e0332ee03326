"""Running the service: metrics, readiness, logs."""
