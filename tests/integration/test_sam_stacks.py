"""template.yaml and examples/signup-stack deploy with sam on MiniStack, and come out as meant:
the APIs' methods and their authorisation, the functions' handlers and settings, the queue and the
schedule. (tests/aws_stack.py builds and deploys them; the runtime's behaviour on them is for the
acceptance tests.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.aws_stack import (
    REGION,
    ExamplesStack,
    RuntimeStack,
    aws_endpoint,
    client,
    deploy_examples,
    deploy_runtime,
    sam,
)

pytestmark = pytest.mark.integration

INGRESS_METHODS = {"/": {"GET", "POST"}, "/{proxy+}": {"GET", "POST", "PUT", "PATCH", "DELETE"}}
ADMIN_METHODS = {"/{proxy+}": {"GET", "POST", "PATCH", "DELETE"}}


@pytest.fixture(scope="module")
def stack_name() -> str:
    aws_endpoint()
    sam()
    return f"tarry-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def runtime(stack_name: str) -> RuntimeStack:
    return deploy_runtime(stack_name)


@pytest.fixture(scope="module")
def examples(stack_name: str, runtime: RuntimeStack) -> ExamplesStack:
    return deploy_examples(f"{stack_name}-examples", runtime)


def signed(method: str, url: str) -> httpx.Response:
    """A request signed with SigV4 for execute-api, as IAM authorisation wants."""
    request = AWSRequest(method=method, url=url)
    SigV4Auth(Credentials("test", "test"), "execute-api", REGION).add_auth(request)
    return httpx.request(method, url, headers=dict(request.headers), timeout=60)


def rest_methods(api_id: str) -> dict[str, dict[str, str]]:
    """path -> method -> authorizationType of a REST API."""
    apis = client("apigateway")
    found: dict[str, dict[str, str]] = {}
    for resource in apis.get_resources(restApiId=api_id)["items"]:
        for method in resource.get("resourceMethods") or {}:
            got = apis.get_method(restApiId=api_id, resourceId=resource["id"], httpMethod=method)
            found.setdefault(resource["path"], {})[method] = got["authorizationType"]
    return found


def api_id(url: str) -> str:
    return url.split("/_aws/execute-api/")[1].split("/")[0]


def test_the_runtime_stack_is_complete(runtime: RuntimeStack) -> None:
    status = client("cloudformation").describe_stacks(StackName=runtime.name)["Stacks"][0]
    assert status["StackStatus"] == "CREATE_COMPLETE"
    assert runtime.table_name == runtime.name
    table = client("dynamodb").describe_table(TableName=runtime.table_name)["Table"]
    assert {i["IndexName"] for i in table["GlobalSecondaryIndexes"]} == {
        "by_service", "by_status", "timers",
    }  # fmt: skip


def test_the_ingress_takes_each_method_without_auth(runtime: RuntimeStack) -> None:
    methods = rest_methods(api_id(runtime.ingress_url))
    assert {path: set(m) for path, m in methods.items() if m} == INGRESS_METHODS
    assert {auth for m in methods.values() for auth in m.values()} == {"NONE"}
    reply = httpx.get(f"{runtime.ingress_url}/restate/health", timeout=60)
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


def test_every_admin_method_wants_iam(runtime: RuntimeStack) -> None:
    methods = rest_methods(api_id(runtime.admin_url))
    assert {path: set(m) for path, m in methods.items() if m} == ADMIN_METHODS
    assert {auth for m in methods.values() for auth in m.values()} == {"AWS_IAM"}
    assert httpx.get(f"{runtime.admin_url}/health", timeout=60).status_code == 403
    reply = signed("GET", f"{runtime.admin_url}/health")
    assert reply.status_code == 200, reply.text


def test_the_functions_and_what_feeds_them(runtime: RuntimeStack) -> None:
    lam = client("lambda")
    config = {
        kind: lam.get_function_configuration(FunctionName=name)
        for kind, name in runtime.functions.items()
    }
    for kind, got in config.items():
        assert got["Handler"] == f"tarry.lambda_adapter.aws.{kind}"
        assert got["Runtime"] == "python3.12"
        assert len(got["Layers"]) == 1  # the one code artifact
        env = got["Environment"]["Variables"]
        assert env["TARRY_TABLE"] == runtime.table_name
        assert env["TARRY_QUEUE_URL"] == runtime.queue_url
        assert (env["TARRY_LOG_LEVEL"], env["TARRY_RETENTION"]) == ("INFO", "24h")
    assert config["ingress"]["Environment"]["Variables"]["TARRY_CALL_BUDGET"] == "25s"

    worker = config["worker"]
    (mapping,) = lam.list_event_source_mappings(FunctionName=worker["FunctionName"])[
        "EventSourceMappings"
    ]
    assert (mapping["BatchSize"], mapping["FunctionResponseTypes"]) == (
        10, ["ReportBatchItemFailures"],
    )  # fmt: skip
    sqs = client("sqs")
    queue_url = sqs.get_queue_url(QueueName=runtime.queue_url.rsplit("/", 1)[1])["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert int(attributes["VisibilityTimeout"]) >= 6 * worker["Timeout"]
    assert '"maxReceiveCount":5' in attributes["RedrivePolicy"].replace(" ", "")

    events = client("events")
    sweep_arn = config["sweep"]["FunctionArn"]
    rules = events.list_rule_names_by_target(TargetArn=sweep_arn)["RuleNames"]
    assert [events.describe_rule(Name=r)["ScheduleExpression"] for r in rules] == ["rate(1 minute)"]


def test_the_examples_are_published_versions(
    runtime: RuntimeStack, examples: ExamplesStack
) -> None:
    lam = client("lambda")
    for arn in (examples.signup_version_arn, examples.registration_version_arn):
        name, version = arn.split(":")[6:8]
        assert version.isdigit()
        got = lam.get_function_configuration(FunctionName=name, Qualifier=version)
        assert got["Handler"] == "tarry_lambda.handler"
        assert got["Environment"]["Variables"]["TARRY_INGRESS_URL"] == runtime.ingress_url
        payload: Any = lam.invoke(FunctionName=arn, Payload=b'{"discover": true}')["Payload"]
        assert b"services" in payload.read()


def test_an_http_api_runtime(stack_name: str) -> None:
    runtime = deploy_runtime(f"{stack_name}-http", {"ApiType": "HTTP"})
    routes = {
        name: {
            r["RouteKey"]: r.get("AuthorizationType", "NONE")
            for r in client("apigatewayv2").get_routes(ApiId=api_id(url))["Items"]
        }
        for name, url in (("ingress", runtime.ingress_url), ("admin", runtime.admin_url))
    }
    assert set(routes["ingress"]) == {
        f"{m} {path}" for path, methods in INGRESS_METHODS.items() for m in methods
    }
    assert set(routes["ingress"].values()) == {"NONE"}
    assert set(routes["admin"]) == {
        f"{m} {path}" for path, methods in ADMIN_METHODS.items() for m in methods
    }
    assert set(routes["admin"].values()) == {"AWS_IAM"}
    reply = httpx.get(f"{runtime.ingress_url}/restate/health", timeout=60)
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})
    assert signed("GET", f"{runtime.admin_url}/health").status_code == 200
