"""The local emulation: everything `template.yaml` deploys, on one machine, no Docker.

- `template`: reads the SAM template, the single source of truth (`intrinsics` resolves
  its references locally);
- `dynamodb`: moto's server with the template's tables and their streams;
- `functions`: invokes a template function's handler file, as Lambda would;
- `websocket_api`, `gateway`, `connections`: API Gateway WebSocket (routes, events,
  `@connections`);
- `streams`, `filtering`: the DynamoDB Streams event source mapping (batching, filter
  criteria, partial batch failures, retries);
- `stack`: starts them all around the very handlers Lambda runs (`make dev`).
"""
