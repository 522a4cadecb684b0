"""CloudFormation pieces, shipped as package data (`tarry dynamodb create-table` reads
``table.yaml``)."""
