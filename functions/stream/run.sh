#!/bin/sh
# Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER) starts this instead of the Python runtime's
# bootstrap, so the layers' /opt/python is not on the path yet.
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}/opt/python"
exec python -m uvicorn --port="$PORT" --factory pts.api:create_app
