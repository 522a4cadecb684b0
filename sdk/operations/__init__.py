"""One module per context operation, over the shared base in :mod:`tarry.operations.base`."""
