"""Reverie's development tools, outside the Lambda layer: the `reverie` command and the local runner that
runs the whole system on one machine (`make dev`, the end-to-end tests)."""
