"""logical_test: megflow-mp's self-check (run: ``megflow-mp selfcheck`` or ``megflow-mp run -p plugins/logical_test``)."""
