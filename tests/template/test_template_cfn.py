"""template.yaml: valid SAM, valid CloudFormation once transformed, and the properties the
architecture depends on (docs/architecture.md) actually present in what CloudFormation would
deploy.

Nothing here calls AWS: `sam validate` runs with `--lint` only (without it SAM CLI asks IAM
for managed policies), and AWS endpoints point at a closed port to prove it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode
from samtranslator.translator.transform import transform

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BIN = Path(sys.executable).parent
REGION = "us-east-1"

TERMINAL = ["done", "error", "cancelled", "timeout"]
FILTER_PATTERNS = [
    {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": ["batch"]}}}},
    {
        "eventName": ["MODIFY"],
        "dynamodb": {"NewImage": {"kind": {"S": ["stream"]}, "status": {"S": TERMINAL}}},
    },
]


def offline_env() -> dict[str, str]:
    """Environment for SAM CLI: a region, dummy credentials, no telemetry, no reachable AWS."""
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "SAM_CLI_TELEMETRY": "0",
    }


class _NoManagedPolicies:
    """The template names no managed policies, so the translator never needs IAM's list."""

    def load(self) -> dict[str, str]:
        return {}


def _packaged(template: dict[str, Any]) -> dict[str, Any]:
    """The template as `sam package` leaves it: local code folders replaced by S3 URIs."""
    template = json.loads(json.dumps(template))
    for name, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://artifacts/{name}.zip"
    return template


@pytest.fixture(scope="module")
def transformed() -> Iterator[dict[str, Any]]:
    """template.yaml through the SAM transform: the CloudFormation that gets deployed."""
    source, problems = decode(str(TEMPLATE))
    assert not problems, problems
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_DEFAULT_REGION", REGION)
        yield transform(_packaged(source), {}, _NoManagedPolicies())


def of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource.get("Properties", {})
        for name, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    (properties,) = of_type(template, resource_type).values()
    return properties


def statements(template: dict[str, Any], role: str) -> list[dict[str, Any]]:
    """Every inline policy statement of `role`, with `Fn::If` branches taken."""
    found = []
    for policy in template["Resources"][role]["Properties"].get("Policies", []):
        if "Fn::If" in policy:
            policy = policy["Fn::If"][1]
        found.extend(policy["PolicyDocument"]["Statement"])
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# -- validity ----------------------------------------------------------------------------


def test_sam_validate_lint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "sam"), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=offline_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_transformed_template_has_no_cfn_lint_errors(transformed: dict[str, Any]) -> None:
    matches = lint(json.dumps(transformed), config=ManualArgs(regions=[REGION]))
    errors = [m for m in matches if m.rule.id.startswith("E")]
    assert not errors, "\n".join(str(m) for m in errors)


# -- data ----------------------------------------------------------------------------------


def test_streams_table_streams_new_images_and_expires_items(
    transformed: dict[str, Any],
) -> None:
    table = transformed["Resources"]["StreamsTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    indexes = {index["IndexName"]: index for index in table["GlobalSecondaryIndexes"]}
    assert [k["AttributeName"] for k in indexes["ChatsByOwner"]["KeySchema"]] == [
        "chatOwner",
        "createdAt",
    ]
    assert [k["AttributeName"] for k in indexes["ActiveStreams"]["KeySchema"]] == [
        "activeStatus",
        "updatedAt",
    ]
    assert [k["AttributeName"] for k in indexes["ChatsByThread"]["KeySchema"]] == [
        "threadId",
        "createdAt",
    ]
    assert indexes["ChatsByThread"]["Projection"] == {"ProjectionType": "ALL"}
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    assert types["updatedAt"] == "N"
    assert types["threadId"] == "S"


def test_connections_table_is_keyed_by_stream_and_indexed_by_connection(
    transformed: dict[str, Any],
) -> None:
    table = transformed["Resources"]["ConnectionsTable"]["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert "StreamSpecification" not in table
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByConnection"
    assert index["KeySchema"] == [{"AttributeName": "connectionId", "KeyType": "HASH"}]


# -- functions ---------------------------------------------------------------------------


def test_every_function_is_python313_on_arm64_with_the_layer(
    transformed: dict[str, Any],
) -> None:
    functions = of_type(transformed, "AWS::Lambda::Function")
    assert set(functions) == {
        "StreamFunction",
        "WebSocketFunction",
        "FanoutFunction",
        "FanoutWorkerFunction",
        "SweeperFunction",
        "AuthorizerFunction",
    }
    (layer_id,) = of_type(transformed, "AWS::Lambda::LayerVersion")
    for name, function in functions.items():
        assert function["Runtime"] == "python3.13", name
        assert function["Architectures"] == ["arm64"], name
        assert {"Ref": layer_id} in function["Layers"], name
    layer = transformed["Resources"][layer_id]["Properties"]
    assert layer["CompatibleRuntimes"] == ["python3.13"]
    assert layer["CompatibleArchitectures"] == ["arm64"]


def test_stream_function_runs_the_app_under_lambda_web_adapter(
    transformed: dict[str, Any],
) -> None:
    function = transformed["Resources"]["StreamFunction"]["Properties"]
    assert function["Handler"] == "run.sh"
    # AWS's published layer unless WebAdapterLayerArn names one (other partitions, regions).
    published = "arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:27"
    adapter = [layer["Fn::If"] for layer in function["Layers"] if "Fn::If" in layer]
    assert adapter == [
        ["HasWebAdapterLayerArn", {"Ref": "WebAdapterLayerArn"}, {"Fn::Sub": published}]
    ]
    assert transformed["Conditions"]["HasWebAdapterLayerArn"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "WebAdapterLayerArn"}, ""]}]
    }
    env = function["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/healthz"
    assert env["PTS_TABLE"] == {"Ref": "StreamsTable"}


def test_stream_function_timeout_and_concurrency_are_parameters(
    transformed: dict[str, Any],
) -> None:
    function = transformed["Resources"]["StreamFunction"]["Properties"]
    assert function["Timeout"] == {"Ref": "StreamTimeoutSeconds"}
    timeout = transformed["Parameters"]["StreamTimeoutSeconds"]
    assert (timeout["Default"], timeout["MaxValue"]) == (300, 900)  # Lambda's maximum
    assert function["ReservedConcurrentExecutions"] == {
        "Fn::If": [
            "ReserveStreamConcurrency",
            {"Ref": "StreamReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    # Unreserved by default: reserving fails in accounts whose concurrency limit is low.
    assert transformed["Parameters"]["StreamReservedConcurrency"]["Default"] == ""
    unreserved = transformed["Conditions"]["ReserveStreamConcurrency"]["Fn::Not"][0]["Fn::Or"]
    assert {c["Fn::Equals"][1] for c in unreserved} == {"", "0"}


def test_function_url_streams_and_leaves_cors_to_the_app(transformed: dict[str, Any]) -> None:
    url = only(transformed, "AWS::Lambda::Url")
    assert url["TargetFunctionArn"] == {"Ref": "StreamFunction"}
    assert url["InvokeMode"] == "RESPONSE_STREAM"
    assert url["AuthType"] == "NONE"
    assert "Cors" not in url


def test_fanout_reads_filtered_records_with_bounded_retries(transformed: dict[str, Any]) -> None:
    mapping = only(transformed, "AWS::Lambda::EventSourceMapping")
    assert mapping["FunctionName"] == {"Ref": "FanoutFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["StreamsTable", "StreamArn"]}
    assert mapping["StartingPosition"] == "LATEST"
    patterns = [json.loads(f["Pattern"]) for f in mapping["FilterCriteria"]["Filters"]]
    assert patterns == FILTER_PATTERNS
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 <= mapping["MaximumRetryAttempts"] <= 10
    assert 60 <= mapping["MaximumRecordAgeInSeconds"] <= 3600
    # DynamoDB keeps records in order per item only once batches run concurrently; a
    # stream's batches are different items, so one batch at a time per shard.
    assert mapping["ParallelizationFactor"] == 1
    destination = mapping["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}
    sends = [
        s for s in statements(transformed, "FanoutFunctionRole") if s["Action"] == "sqs:SendMessage"
    ]
    assert [s["Resource"] for s in sends] == [destination]


def test_sweeper_runs_every_minute(transformed: dict[str, Any]) -> None:
    rule = only(transformed, "AWS::Events::Rule")
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["SweeperFunction", "Arn"]}


# -- WebSocket API -------------------------------------------------------------------------


def test_websocket_routes_all_reach_the_websocket_function(transformed: dict[str, Any]) -> None:
    api = only(transformed, "AWS::ApiGatewayV2::Api")
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"
    routes = {r["RouteKey"] for r in of_type(transformed, "AWS::ApiGatewayV2::Route").values()}
    assert routes == {"$connect", "$disconnect", "subscribe", "unsubscribe", "$default"}
    for integration in of_type(transformed, "AWS::ApiGatewayV2::Integration").values():
        assert integration["IntegrationType"] == "AWS_PROXY"
        uri = integration["IntegrationUri"]["Fn::Sub"]
        if isinstance(uri, list):  # SAM's routes
            assert uri[1] == {"FunctionArn": {"Fn::GetAtt": ["WebSocketFunction", "Arn"]}}
        else:  # $connect, declared apart for its conditional authorizer
            assert "${WebSocketFunction.Arn}" in uri
    stage = only(transformed, "AWS::ApiGatewayV2::Stage")
    assert stage["StageName"] == {"Ref": "StageName"}
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": {"Ref": "WebSocketThrottlingRateLimit"},
        "ThrottlingBurstLimit": {"Ref": "WebSocketThrottlingBurstLimit"},
    }


def test_connect_has_the_jwt_authorizer_in_jwt_mode_only(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    assert transformed["Parameters"]["AuthMode"]["AllowedValues"] == ["none", "jwt"]
    assert transformed["Conditions"]["JwtAuth"] == {"Fn::Equals": [{"Ref": "AuthMode"}, "jwt"]}
    (connect,) = [
        r
        for r in of_type(transformed, "AWS::ApiGatewayV2::Route").values()
        if r["RouteKey"] == "$connect"
    ]
    assert connect["AuthorizationType"] == {"Fn::If": ["JwtAuth", "CUSTOM", "NONE"]}
    assert connect["AuthorizerId"] == {
        "Fn::If": ["JwtAuth", {"Ref": "WebSocketConnectAuthorizer"}, {"Ref": "AWS::NoValue"}]
    }
    others = [
        r
        for r in of_type(transformed, "AWS::ApiGatewayV2::Route").values()
        if r["RouteKey"] != "$connect"
    ]
    assert all(r.get("AuthorizationType", "NONE") == "NONE" for r in others)
    authorizer = resources["WebSocketConnectAuthorizer"]
    assert authorizer["Condition"] == "JwtAuth"
    assert authorizer["Properties"]["AuthorizerType"] == "REQUEST"
    assert authorizer["Properties"]["IdentitySource"] == ["route.request.querystring.token"]
    assert "${AuthorizerFunction.Arn}" in authorizer["Properties"]["AuthorizerUri"]["Fn::Sub"]
    permission = resources["AuthorizerPermission"]
    assert permission["Condition"] == "JwtAuth"
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    assert permission["Properties"]["SourceArn"]["Fn::Sub"].endswith(
        "${WebSocketApi}/authorizers/${WebSocketConnectAuthorizer}"
    )
    for name in ("AuthorizerFunction", "AuthorizerFunctionRole", "AuthorizerFunctionLogGroup"):
        assert resources[name]["Condition"] == "JwtAuth", name
    # The authorizer needs no AWS permission beyond its logs and traces.
    assert statements(transformed, "AuthorizerFunctionRole") == []


def test_cognito_is_created_only_without_an_issuer(transformed: dict[str, Any]) -> None:
    resources = transformed["Resources"]
    for name in ("UserPool", "UserPoolDomain", "UserPoolClient", "ManagedLoginBranding"):
        assert resources[name]["Condition"] == "CreateUserPool", name
    client = resources["UserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False  # a public client: PKCE binds the code
    assert client["AllowedOAuthFlows"] == ["code"]
    assert resources["UserPool"]["Properties"]["AdminCreateUserConfig"] == {
        "AllowAdminCreateUserOnly": True
    }
    env = resources["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PTS_AUTH"] == {"Ref": "AuthMode"}
    assert env["PTS_JWT_AUDIENCE"] == {
        "Fn::If": ["CreateUserPool", {"Ref": "UserPoolClient"}, {"Ref": "JwtAudience"}]
    }
    # No limit in AuthMode none, where everybody is one user.
    assert env["PTS_MAX_ACTIVE_STREAMS_PER_USER"] == {
        "Fn::If": ["JwtAuth", {"Ref": "MaxActiveStreamsPerUser"}, ""]
    }


def test_manage_connections_is_scoped_to_this_api(transformed: dict[str, Any]) -> None:
    scoped = (
        "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:"
        "${WebSocketApi}/${StageName}/POST/@connections/*"
    )
    granted = {}
    for role in of_type(transformed, "AWS::IAM::Role"):
        for statement in statements(transformed, role):
            if any(a.startswith("execute-api:") for a in as_list(statement["Action"])):
                assert as_list(statement["Action"]) == ["execute-api:ManageConnections"]
                granted[role] = statement["Resource"]
    assert granted == {
        "WebSocketFunctionRole": {"Fn::Sub": scoped},
        "FanoutFunctionRole": {"Fn::Sub": scoped},
        "FanoutWorkerFunctionRole": {"Fn::Sub": scoped},
    }


def test_fanout_may_invoke_only_its_worker_which_retries_into_the_failure_queue(
    transformed: dict[str, Any],
) -> None:
    invokes = {
        role: statement["Resource"]
        for role in of_type(transformed, "AWS::IAM::Role")
        for statement in statements(transformed, role)
        if "lambda:InvokeFunction" in as_list(statement["Action"])
    }
    assert list(invokes) == ["FanoutFunctionRole"]
    assert "FanoutWorkerFunction" in json.dumps(invokes["FanoutFunctionRole"])
    fanout = transformed["Resources"]["FanoutFunction"]["Properties"]
    env = fanout["Environment"]["Variables"]
    assert env["PTS_FANOUT_WORKER_FUNCTION"] == {"Ref": "FanoutWorkerFunction"}
    assert env["PTS_FANOUT_VIEWERS_PER_INVOCATION"] == {"Ref": "FanoutViewersPerInvocation"}
    worker = transformed["Resources"]["FanoutWorkerFunction"]["Properties"]
    assert worker["Handler"] == "app.worker"
    assert worker["DeadLetterConfig"] == {
        "TargetArn": {"Fn::GetAtt": ["FanoutFailureQueue", "Arn"]}
    }
    (config,) = of_type(transformed, "AWS::Lambda::EventInvokeConfig").values()
    assert config["MaximumRetryAttempts"] == 2


# -- least privilege -----------------------------------------------------------------------


def test_no_inline_policy_grants_wildcards(transformed: dict[str, Any]) -> None:
    for role in of_type(transformed, "AWS::IAM::Role"):
        for statement in statements(transformed, role):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                assert "*" not in action, (role, action)
            assert "*" not in as_list(statement["Resource"]), (role, statement)


def test_only_the_stream_function_may_call_bedrock_and_only_when_chosen(
    transformed: dict[str, Any],
) -> None:
    callers = {
        role
        for role in of_type(transformed, "AWS::IAM::Role")
        for statement in statements(transformed, role)
        if any(a.startswith("bedrock:") for a in as_list(statement["Action"]))
    }
    assert callers == {"StreamFunctionRole"}
    conditional = [
        policy["Fn::If"][0]
        for policy in transformed["Resources"]["StreamFunctionRole"]["Properties"]["Policies"]
        if "Fn::If" in policy
    ]
    assert conditional == ["UseBedrock", "HasOpenAIApiKeySecret", "HasOpenAIApiKeyParameter"]


def test_the_openai_key_is_read_from_its_one_secret_or_parameter(
    transformed: dict[str, Any],
) -> None:
    """The key is never a parameter: the function gets where it is stored, and may read that
    one secret (or parameter) only, only when one is named."""
    env = transformed["Resources"]["StreamFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PTS_OPENAI_BASE_URL"] == {"Ref": "OpenAIBaseUrl"}
    assert env["PTS_OPENAI_MODEL"] == {"Ref": "OpenAIModel"}
    assert env["PTS_OPENAI_API_KEY_SECRET"] == {"Ref": "OpenAIApiKeySecretArn"}
    assert env["PTS_OPENAI_API_KEY_PARAMETER"] == {"Ref": "OpenAIApiKeyParameterName"}
    assert not any("KEY" in name and "OPENAI" in name for name in transformed["Parameters"])
    granted = {}
    for role in of_type(transformed, "AWS::IAM::Role"):
        for policy in transformed["Resources"][role]["Properties"].get("Policies", []):
            condition, then, _ = policy.get("Fn::If", (None, policy, None))
            for statement in then["PolicyDocument"]["Statement"]:
                for action in as_list(statement["Action"]):
                    if action.startswith(("secretsmanager:", "ssm:")):
                        granted[action] = (role, condition, statement["Resource"])
    parameter_arn = (
        "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}"
        ":parameter${OpenAIApiKeyParameterName}"
    )
    assert granted == {
        "secretsmanager:GetSecretValue": (
            "StreamFunctionRole",
            "HasOpenAIApiKeySecret",
            {"Ref": "OpenAIApiKeySecretArn"},
        ),
        "ssm:GetParameter": (
            "StreamFunctionRole",
            "HasOpenAIApiKeyParameter",
            {"Fn::Sub": parameter_arn},
        ),
    }
    parameters = transformed["Parameters"]
    secret = parameters["OpenAIApiKeySecretArn"]["AllowedPattern"]
    assert re.fullmatch(secret, "")
    assert re.fullmatch(
        secret, "arn:aws:secretsmanager:eu-west-1:123456789012:secret:pts/ok-Ab12Cd"
    )
    assert not re.fullmatch(secret, "sk-proj-abc123")  # a key pasted by mistake
    assert re.fullmatch(parameters["OpenAIApiKeyParameterName"]["AllowedPattern"], "/pts/key")
    # Naming both is refused at deploy time, not by a function that cannot start.
    (rule,) = transformed["Rules"]["OneOpenAIApiKeyStore"]["Assertions"]
    either = {e["Fn::Equals"][0]["Ref"] for e in rule["Assert"]["Fn::Or"]}
    assert either == {"OpenAIApiKeySecretArn", "OpenAIApiKeyParameterName"}


# -- operations ---------------------------------------------------------------------------


def test_streams_table_has_point_in_time_recovery(transformed: dict[str, Any]) -> None:
    table = transformed["Resources"]["StreamsTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["PointInTimeRecoverySpecification"] == {
        "PointInTimeRecoveryEnabled": True
    }


def test_every_function_is_traced_and_logs_to_its_own_expiring_group(
    transformed: dict[str, Any],
) -> None:
    groups = of_type(transformed, "AWS::Logs::LogGroup")
    for name, function in of_type(transformed, "AWS::Lambda::Function").items():
        assert function["TracingConfig"] == {"Mode": "Active"}, name
        assert function["LoggingConfig"]["LogGroup"] == {"Ref": f"{name}LogGroup"}, name
        assert groups.pop(f"{name}LogGroup") == {"RetentionInDays": {"Ref": "LogRetentionDays"}}
    assert not groups
    assert transformed["Parameters"]["LogRetentionDays"]["Default"] == 30


ALARMS = {
    # alarm: (namespace, metric, dimension value)
    "FanoutErrorsAlarm": ("AWS/Lambda", "Errors", {"Ref": "FanoutFunction"}),
    "FanoutIteratorAgeAlarm": ("AWS/Lambda", "IteratorAge", {"Ref": "FanoutFunction"}),
    "FanoutFailureQueueAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"Fn::GetAtt": ["FanoutFailureQueue", "QueueName"]},
    ),
    "StreamErrorsAlarm": ("AWS/Lambda", "Errors", {"Ref": "StreamFunction"}),
    "StreamThrottlesAlarm": ("AWS/Lambda", "Throttles", {"Ref": "StreamFunction"}),
}


def test_alarms_watch_the_fanout_the_failure_queue_and_the_stream_function(
    transformed: dict[str, Any],
) -> None:
    alarms = of_type(transformed, "AWS::CloudWatch::Alarm")
    assert set(alarms) == set(ALARMS)
    notify = {"Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]}
    for name, (namespace, metric, dimension) in ALARMS.items():
        alarm = alarms[name]
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), name
        assert [d["Value"] for d in alarm["Dimensions"]] == [dimension], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        assert alarm["AlarmActions"] == alarm["OKActions"] == notify, name
    # The fan-out gives records up at MaximumRecordAgeInSeconds: warn well before.
    mapping = only(transformed, "AWS::Lambda::EventSourceMapping")
    age = alarms["FanoutIteratorAgeAlarm"]
    assert age["Threshold"] < mapping["MaximumRecordAgeInSeconds"] * 1000


def test_the_alarm_topic_exists_only_with_an_email(transformed: dict[str, Any]) -> None:
    topic = transformed["Resources"]["AlarmTopic"]
    assert topic["Condition"] == "HasAlarmEmail"
    assert topic["Properties"]["Subscription"] == [
        {"Protocol": "email", "Endpoint": {"Ref": "AlarmEmail"}}
    ]
    assert transformed["Conditions"]["HasAlarmEmail"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmEmail"}, ""]}]
    }
    assert transformed["Parameters"]["AlarmEmail"]["Default"] == ""
    assert transformed["Outputs"]["AlarmTopicArn"]["Condition"] == "HasAlarmEmail"


# -- what a user needs next ----------------------------------------------------------------


def test_outputs_name_the_urls_and_tables(transformed: dict[str, Any]) -> None:
    outputs = transformed["Outputs"]
    assert set(outputs) >= {
        "StreamFunctionUrl",
        "WebSocketUrl",
        "ChatPageUrl",
        "StreamsTableName",
        "ConnectionsTableName",
        "FanoutFailureQueueUrl",
    }
    assert outputs["StreamFunctionUrl"]["Value"] == {
        "Fn::GetAtt": ["StreamFunctionUrl", "FunctionUrl"]
    }
    assert outputs["WebSocketUrl"]["Value"]["Fn::Sub"].startswith("wss://${WebSocketApi}.")


def test_every_parameter_is_used_and_generator_admits_custom_sources(
    transformed: dict[str, Any],
) -> None:
    body = json.dumps({k: v for k, v in transformed.items() if k != "Parameters"})
    for name in transformed["Parameters"]:
        assert f'{{"Ref": "{name}"}}' in body or f"${{{name}}}" in body, name
    pattern = transformed["Parameters"]["Generator"]["AllowedPattern"]
    for value in ("demo", "bedrock", "openai", "mypackage.sources:make_source"):
        assert re.fullmatch(pattern, value), value
    assert not re.fullmatch(pattern, "demo; rm -rf /")
