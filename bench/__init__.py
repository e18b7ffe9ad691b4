"""`make bench`: the reply-2000 workload against the local stack.

Every figure is measured in the same run as the baseline it is compared with:

- `workload`: the deterministic reply, its paced source and the piece timeline;
- `metering`: DynamoDB requests and request units, counted as the local DynamoDB serves them;
- `baselines`: per-token writes, full-body re-send, HTTP-only (a store that writes nothing);
- `stats`: percentiles and medians;
- `harness`: the local stack in a thread, plus the extra apps the baselines need;
- `clients`: HTTP drivers and WebSocket viewers, in a separate process;
- `scenarios`: the measurements; `coldstart`: the built artifact;
- `cost`: AWS cost per 1,000 replies from the measured counts (`docs/pricing.toml`);
- `report`: the table, `docs/bench/results.json`, `docs/benchmarks.md` and the charts.

Run `python -m bench` (or `make bench`) from the project root.
"""
