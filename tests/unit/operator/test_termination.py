"""termination.detail and redact: the line of a failed container's message that status shows."""

from __future__ import annotations

import json

import pytest
from modelplane_operator.status import MODEL_LOAD_FAILED, pod_problem
from modelplane_operator.termination import MAX_DETAIL_CHARS, detail, redact


def _log(level: str, message: str, **extra: str) -> str:
    return json.dumps({"time": "2026-01-01T00:00:00.000Z", "level": level,
                       "logger": "modelplane.storage", "message": message, **extra})


FETCH_TAIL = "\n".join([
    # The kubelet's tail can start mid-line: 2 KiB of log, not whole lines.
    'bytes": 1048576, "rate": "12.0 MiB/s"}',
    _log("info", "fetching s3://models/fraud", credentials="access key ...WXYZ"),
    _log("info", "progress", bytes="2097152"),
    "modelplane: access denied to s3://models/fraud (credentials: access key ...WXYZ "
    "(AWS_ACCESS_KEY_ID from /etc/modelplane/storage-credentials/AWS_ACCESS_KEY_ID)); "
    "check the key's policy allows s3:ListBucket",
    "",
])


def test_the_fetchers_last_plain_line_is_the_detail() -> None:
    assert detail(FETCH_TAIL) == (
        "access denied to s3://models/fraud (credentials: access key ...WXYZ "
        "(AWS_ACCESS_KEY_ID from /etc/modelplane/storage-credentials/AWS_ACCESS_KEY_ID)); "
        "check the key's policy allows s3:ListBucket")


def test_runtime_json_logs_give_their_last_error() -> None:
    tail = "\n".join([
        _log("info", "Waiting for application startup."),
        _log("error", "model load failed: listing s3://models/fraud/: no such bucket"),
        _log("info", "shutting down"),
    ])
    assert detail(tail) == "model load failed: listing s3://models/fraud/: no such bucket"
    assert detail(_log("warning", "slow start")) == "slow start"


@pytest.mark.parametrize("message", [None, "", "\n \n"])
def test_nothing_said_is_none(message: str | None) -> None:
    assert detail(message) is None


def test_a_long_line_is_cut() -> None:
    text = detail("x" * 5000)
    assert text is not None
    assert len(text) == MAX_DETAIL_CHARS
    assert text.endswith("...")


@pytest.mark.parametrize(("text", "secret"), [
    ("cannot fetch https://acct.blob.core.windows.net/c/m?sv=2024-01-01&sig=SIGSECRET%3D",
     "SIGSECRET"),
    ("GET https://bucket.s3.amazonaws.com/m.tar.gz?X-Amz-Signature=AMZSECRET&X-Amz-Credential=k",
     "AMZSECRET"),
    ("bad DefaultEndpointsProtocol=https;AccountName=a;AccountKey=KEYSECRET==;EndpointSuffix=x",
     "KEYSECRET"),
    ("SharedAccessSignature=sv=1&sig=SASSECRET", "SASSECRET"),
    ('key file {"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nPK'
     'SECRET\\n-----END PRIVATE KEY-----\\n"}', "PKSECRET"),
    ("-----BEGIN RSA PRIVATE KEY-----\nPEMSECRET\n-----END RSA PRIVATE KEY-----", "PEMSECRET"),
    ("aws_secret_access_key=AWSSECRET in ~/.aws/credentials", "AWSSECRET"),
])
def test_credentials_are_redacted(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert secret not in (detail(text) or "")


def test_redaction_keeps_what_helps() -> None:
    assert redact("no such key s3://models/fraud/1/saved_model.pb") == (
        "no such key s3://models/fraud/1/saved_model.pb")
    assert redact("see https://example.com/a?b=c") == "see https://example.com/a?..."


def test_init_container_failure_is_model_load_failed_with_the_detail() -> None:
    pod = {"metadata": {"name": "fraud-1"}, "status": {"initContainerStatuses": [{
        "name": "fetch-model", "ready": False, "restartCount": 2,
        "state": {"waiting": {"reason": "CrashLoopBackOff",
                              "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 1, "reason": "Error",
                                     "message": FETCH_TAIL}}}]}}
    problem = pod_problem(pod)
    assert problem is not None
    assert problem.reason == MODEL_LOAD_FAILED
    assert problem.message.startswith(
        "pod fraud-1: fetching the model failed: access denied to s3://models/fraud")
    assert "modelplane: " not in problem.message


def test_init_container_failure_without_a_message_says_its_reason() -> None:
    pod = {"metadata": {"name": "p"}, "status": {"initContainerStatuses": [{
        "name": "fetch-model", "state": {"terminated": {"exitCode": 137,
                                                        "reason": "OOMKilled"}}}]}}
    problem = pod_problem(pod)
    assert problem is not None
    assert problem.message == "pod p: fetching the model failed: OOMKilled"
