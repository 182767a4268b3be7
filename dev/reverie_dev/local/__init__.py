"""The whole system on one machine: embedded engines, the template read as AWS would, and the runner."""
