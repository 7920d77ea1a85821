"""Form validation (15_lambda_registry: a lambda made by a factory changes)."""
