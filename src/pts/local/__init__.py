"""The local emulation: everything `template.yaml` deploys, on one machine, no Docker.

`template` reads the SAM template (the single source of truth), `dynamodb` runs moto's server
with the template's tables, `stack` runs the same handlers Lambda runs around them.
"""
