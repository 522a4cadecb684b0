"""tarry's SAM stacks on an AWS endpoint: ``sam build``, ``sam deploy``, and the stack's outputs.

>>> runtime = deploy_runtime("tarry-accept")  # doctest: +SKIP
>>> httpx.get(f"{runtime.ingress_url}/restate/health").json()  # doctest: +SKIP
{'status': 'ok'}
>>> examples = deploy_examples("tarry-accept-examples", runtime)  # doctest: +SKIP
>>> examples.signup_version_arn  # doctest: +SKIP
'arn:aws:lambda:us-east-1:000000000000:function:tarry-accept-examples-SignupFunction-…:1'

``template.yaml`` is the runtime (table, queues, the ingress, worker, sweep and admin functions
and their APIs); ``examples/signup-stack/template.yaml`` deploys the signup and registration
examples as functions to register with it. ``scripts/sam.sh`` installs the SAM CLI
(``TARRY_SAM``); ``scripts/ministack.sh`` starts MiniStack and exports ``TARRY_AWS_ENDPOINT``.
Without either the test is skipped by hand and fails under ``CI=true``. Only a loopback endpoint
is used: these helpers never deploy to an AWS account.

Builds go to ``build/sam/`` (ignored by git); the Makefiles cache what did not change, so a build
after the first takes seconds. What MiniStack (1.5.33) needs that AWS does not, done here and not
in the templates:

- API URLs: the outputs have AWS's ``https://{api}.execute-api.{region}.amazonaws.com/{stage}``;
  the stacks returned have MiniStack's ``{endpoint}/_aws/execute-api/{api}/{stage}`` (``outputs``
  keeps them as they are).
- HTTP APIs (``ApiType=HTTP``): MiniStack's CloudFormation ignores an ``AWS::ApiGatewayV2::Api``
  ``Body``, so the routes come out empty; they are made here through the API Gateway v2 API
  from the template's own OpenAPI body (methods, target function, ``Auth``). REST APIs import
  their body, explicit methods and IAM authorisation included, and need nothing.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import yaml
from botocore.config import Config

from tests.dynamodb_local import unavailable

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_TEMPLATE = ROOT / "template.yaml"
EXAMPLES_TEMPLATE = ROOT / "examples" / "signup-stack" / "template.yaml"
# Per test worker (pytest-xdist names it), so one worker's deploy never reads what another's
# build is rewriting.
BUILD = ROOT / "build" / "sam" / os.environ.get("PYTEST_XDIST_WORKER", "main")
REGION = "us-east-1"
BUCKET = "tarry-sam-artifacts"  # where sam deploy uploads the code, made when missing
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]  # roles; the nested table stack
# AWS's form of an API's URL, as the templates' outputs give it
_AWS_API_URL = re.compile(r"^https://(?P<api>[a-z0-9]+)\.execute-api\.[a-z0-9-]+\.amazonaws\.com")


@dataclass(frozen=True)
class Deployed:
    """A stack as ``sam deploy`` left it: its outputs, and what building and deploying took."""

    name: str
    outputs: dict[str, str]  # as CloudFormation has them
    build_s: float
    deploy_s: float


@dataclass(frozen=True)
class RuntimeStack(Deployed):
    """template.yaml deployed: URLs usable on the endpoint it was deployed to."""

    ingress_url: str = ""
    admin_url: str = ""
    table_name: str = ""
    queue_url: str = ""
    dead_letter_queue_url: str = ""
    # ingress, worker, sweep, admin -> the function's name
    functions: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExamplesStack(Deployed):
    """examples/signup-stack deployed: the versions to register with the runtime."""

    signup_version_arn: str = ""
    registration_version_arn: str = ""


def aws_endpoint() -> str:
    """The endpoint to deploy to (``TARRY_AWS_ENDPOINT``); skips the test (fails it under
    ``CI=true``) without one, and refuses anything but loopback."""
    endpoint = os.environ.get("TARRY_AWS_ENDPOINT")
    if not endpoint:
        unavailable("an AWS endpoint", "TARRY_AWS_ENDPOINT is not set")
    if urlsplit(endpoint).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise RuntimeError(f"{endpoint} is not a loopback endpoint: these helpers never deploy "
                           "to an AWS account")  # fmt: skip
    return endpoint


def sam() -> str:
    """The SAM CLI scripts/sam.sh installed."""
    path = os.environ.get("TARRY_SAM") or str(ROOT / ".ci/.deps/sam/venv/bin/sam")
    if not Path(path).is_file():
        unavailable("the SAM CLI", f"{path} is missing (scripts/sam.sh installs it)")
    return path


def client(service: str, endpoint: str | None = None) -> Any:
    """A boto3 client of ``service`` on the endpoint."""
    return boto3.client(
        service,
        endpoint_url=endpoint or aws_endpoint(),
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"total_max_attempts": 2}, connect_timeout=5, read_timeout=60),
    )


def deploy_runtime(
    stack_name: str,
    parameters: dict[str, str] | None = None,
    endpoint: str | None = None,
) -> RuntimeStack:
    """Build and deploy template.yaml as ``stack_name`` (its table named after the stack unless
    ``parameters`` names one; ``ApiType``, ``Retention``, ... likewise)."""
    endpoint = endpoint or aws_endpoint()
    parameters = {"TableName": stack_name, **(parameters or {})}
    built, build_s = sam_build(RUNTIME_TEMPLATE, BUILD / "runtime")
    deploy_s = sam_deploy(built, stack_name, parameters, endpoint)
    outputs = stack_outputs(stack_name, endpoint)
    if parameters.get("ApiType") == "HTTP":
        add_http_api_routes(RUNTIME_TEMPLATE, stack_name, endpoint)
    return RuntimeStack(
        name=stack_name,
        outputs=outputs,
        build_s=build_s,
        deploy_s=deploy_s,
        ingress_url=endpoint_url(outputs["IngressUrl"], endpoint),
        admin_url=endpoint_url(outputs["AdminUrl"], endpoint),
        table_name=outputs["TableName"],
        queue_url=outputs["QueueUrl"],
        dead_letter_queue_url=outputs["DeadLetterQueueUrl"],
        functions={
            kind: outputs[f"{kind.capitalize()}FunctionName"]
            for kind in ("ingress", "worker", "sweep", "admin")
        },
    )


def deploy_examples(
    stack_name: str, runtime: RuntimeStack, endpoint: str | None = None
) -> ExamplesStack:
    """Build and deploy examples/signup-stack as ``stack_name``, for ``runtime``: its table,
    and its ingress URL in the links the examples email."""
    endpoint = endpoint or aws_endpoint()
    parameters = {"TableName": runtime.table_name, "IngressUrl": runtime.ingress_url}
    built, build_s = sam_build(EXAMPLES_TEMPLATE, BUILD / "examples")
    deploy_s = sam_deploy(built, stack_name, parameters, endpoint)
    outputs = stack_outputs(stack_name, endpoint)
    return ExamplesStack(
        name=stack_name,
        outputs=outputs,
        build_s=build_s,
        deploy_s=deploy_s,
        signup_version_arn=outputs["SignupVersionArn"],
        registration_version_arn=outputs["RegistrationVersionArn"],
    )


def sam_build(template: Path, build_dir: Path) -> tuple[Path, float]:
    """``sam build`` of ``template`` into ``build_dir``; the built template, and the seconds it
    took. In the source folder (``--build-in-source``): otherwise SAM copies the repository,
    virtualenvs and all, before running make. One build at a time across processes (the test
    workers): the templates share the Makefile's build/lambda, which a build starts by removing."""
    started = time.monotonic()
    BUILD.mkdir(parents=True, exist_ok=True)
    with (BUILD.parent / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        _run([sam(), "build", "--template-file", str(template), "--build-dir", str(build_dir),
              "--build-in-source"], _tool_env(), timeout=900)  # fmt: skip
    return build_dir / "template.yaml", time.monotonic() - started


def sam_deploy(built: Path, stack_name: str, parameters: dict[str, str], endpoint: str) -> float:
    """``sam deploy`` of a built template, non-interactive; the seconds it took. A stack that is
    already up to date is not an error."""
    s3 = client("s3", endpoint)
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)
    overrides = [f"{key}={value}" for key, value in parameters.items()]
    started = time.monotonic()
    _run([sam(), "deploy", "--template-file", str(built), "--stack-name", stack_name,
          "--s3-bucket", BUCKET, "--region", REGION, "--capabilities", *CAPABILITIES,
          "--no-confirm-changeset", "--no-fail-on-empty-changeset",
          "--parameter-overrides", *overrides],
         _aws_env(endpoint), timeout=600)  # fmt: skip
    return time.monotonic() - started


def stack_outputs(stack_name: str, endpoint: str | None = None) -> dict[str, str]:
    """The stack's outputs, by key."""
    stack = client("cloudformation", endpoint).describe_stacks(StackName=stack_name)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def endpoint_url(url: str, endpoint: str) -> str:
    """An API's URL as AWS gives it, as the endpoint serves it (MiniStack's path form).

    >>> endpoint_url("https://a1b2c3.execute-api.us-east-1.amazonaws.com/api",
    ...              "http://127.0.0.1:4566")
    'http://127.0.0.1:4566/_aws/execute-api/a1b2c3/api'
    >>> endpoint_url("https://a1b2c3.execute-api.us-east-1.amazonaws.com", "http://127.0.0.1:4566")
    'http://127.0.0.1:4566/_aws/execute-api/a1b2c3'
    """
    match = _AWS_API_URL.match(url)
    if match is None:
        return url
    return f"{endpoint.rstrip('/')}/_aws/execute-api/{match['api']}{url[match.end() :]}"


def add_http_api_routes(template: Path, stack_name: str, endpoint: str | None = None) -> int:
    """Make the routes of the stack's HTTP APIs from the template's OpenAPI bodies, for an
    endpoint whose CloudFormation did not (MiniStack). An API that has routes is left as it is.
    Returns how many routes were made."""
    endpoint = endpoint or aws_endpoint()
    resources = _read_template(template)["Resources"]
    cloudformation = client("cloudformation", endpoint)
    deployed = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cloudformation.describe_stack_resources(StackName=stack_name)["StackResources"]
    }
    apis = client("apigatewayv2", endpoint)
    functions = client("lambda", endpoint)
    made = 0
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Serverless::HttpApi" or logical_id not in deployed:
            continue
        api_id = deployed[logical_id]
        if apis.get_routes(ApiId=api_id)["Items"]:
            continue
        properties = resource["Properties"]
        iam = (properties.get("Auth") or {}).get("DefaultAuthorizer") == "AWS_IAM"
        integrations: dict[str, str] = {}  # function's logical id -> integration id
        for path, operations in properties["DefinitionBody"]["paths"].items():
            for method, operation in operations.items():
                integration = operation["x-amazon-apigateway-integration"]
                target = _get_att_resource(integration["uri"])
                if target not in integrations:
                    arn = functions.get_function(FunctionName=deployed[target])["Configuration"][
                        "FunctionArn"
                    ]
                    integrations[target] = apis.create_integration(
                        ApiId=api_id,
                        IntegrationType="AWS_PROXY",
                        IntegrationUri=arn,
                        PayloadFormatVersion=integration.get("payloadFormatVersion", "2.0"),
                    )["IntegrationId"]
                apis.create_route(
                    ApiId=api_id,
                    RouteKey=f"{method.upper()} {path}",
                    Target=f"integrations/{integrations[target]}",
                    AuthorizationType="AWS_IAM" if iam else "NONE",
                )
                made += 1
    return made


def _get_att_resource(value: Any) -> str:
    """The resource of an ``!GetAtt NAME.Arn`` (as _read_template reads it)."""
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        att = value["Fn::GetAtt"]
        return str(att[0] if isinstance(att, list) else att.split(".")[0])
    raise ValueError(f"an HTTP API integration's uri should be !GetAtt FUNCTION.Arn: {value!r}")


class _CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags, read as their long forms (``!Ref X`` as
    ``{"Ref": "X"}``, ``!GetAtt A.B`` as ``{"Fn::GetAtt": "A.B"}``)."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix == "Ref" else f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _tag)


def _read_template(template: Path) -> dict[str, Any]:
    read: dict[str, Any] = yaml.load(template.read_text(), Loader=_CloudFormationLoader)
    return read


def _tool_env() -> dict[str, str]:
    """The environment sam build runs in: a real python3.12 first on PATH (SAM refuses a pyenv
    shim; the Makefiles compile for it), and the tarry command of the interpreter running the
    tests for the examples' Makefile."""
    env = dict(os.environ)
    python312 = _python312()
    env["PATH"] = os.pathsep.join([str(Path(python312).parent), env.get("PATH", "")])
    env["PYTHON"] = python312
    env["TARRY"] = str(Path(sys.executable).parent / "tarry")
    env["SAM_CLI_TELEMETRY"] = "0"
    return env


def _aws_env(endpoint: str) -> dict[str, str]:
    """The environment sam deploy runs in: the endpoint and test credentials, and none of the
    caller's AWS settings (a profile, a DynamoDB Local endpoint)."""
    env = {k: v for k, v in _tool_env().items() if not k.startswith("AWS_")}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION=REGION,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        # how often sam deploy polls the stack (its default, 5 s, is most of a deploy here)
        SAM_CLI_POLL_DELAY="0.5",
    )
    return env


def _python312() -> str:
    """A Python 3.12 interpreter that runs (not a pyenv shim of one that is not installed):
    scripts/sam.sh's, else one found the same way."""
    if os.environ.get("TARRY_SAM_PYTHON"):
        return os.environ["TARRY_SAM_PYTHON"]
    try:
        home = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout
    except OSError:
        home = ""
    for candidate in (
        sys.executable if sys.version_info[:2] == (3, 12) else "",
        str(Path(home.strip()) / "versions/3.12.1/bin/python3.12") if home.strip() else "",
        "python3.12",
    ):
        if not candidate:
            continue
        try:
            ran = subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12); "
                 "print(sys.executable)"],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ran.returncode == 0:
            return ran.stdout.strip()
    raise RuntimeError("sam build needs a Python 3.12 interpreter (python3.12, or pyenv's 3.12.1)")


def _run(args: list[str], env: dict[str, str], timeout: float) -> None:
    """Run a command; on failure raise with its output (sam prints its reasons there)."""
    ran = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout, check=False)  # fmt: skip
    if ran.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:2])} failed ({ran.returncode}):\n{ran.stdout}\n"
                           f"{ran.stderr}")  # fmt: skip


__all__ = [
    "Deployed",
    "ExamplesStack",
    "RuntimeStack",
    "add_http_api_routes",
    "aws_endpoint",
    "client",
    "deploy_examples",
    "deploy_runtime",
    "endpoint_url",
    "sam",
    "sam_build",
    "sam_deploy",
    "stack_outputs",
]
