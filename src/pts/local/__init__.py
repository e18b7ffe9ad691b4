"""The local emulation: everything `template.yaml` deploys, on one machine, no Docker.

- `template`: reads the SAM template, the single source of truth (`intrinsics` resolves
  its references locally);
- `dynamodb`: moto's server with the template's tables and their streams;
- `functions`, `sandbox`: each function in execution environments of its own (processes
  with only its environment, one invocation at a time, frozen between invocations), and the
  streaming function's `run.sh` under uvicorn, as Lambda Web Adapter runs it;
- `apigateway_websocket` (routes and event shapes), `gateway` (the WebSocket endpoint),
  `connections_endpoint` (the `@connections` API the handlers post to): API Gateway WebSocket;
- `event_source_mapping`, `filtering`: the DynamoDB Streams event source mapping (polling,
  batching, filter criteria, partial batch failures, retries);
- `stack`: starts them all around the very handlers Lambda runs (`make dev`).
"""
