"""The tarry runtime: ingress, admin API, invoker, timers, stores, deployments and the CLI."""
