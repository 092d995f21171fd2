"""Numbers: per-channel window statistics (pure pandas) and the Prometheus metrics paymon exports."""
