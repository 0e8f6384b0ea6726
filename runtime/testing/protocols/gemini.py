"""The fake Gemini wire: `generateContent` and `streamGenerateContent`, function calls without
ids, thought signatures on Gemini 3, and Google's error shapes."""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

from actors.adapters.gemini import GeminiWire as GeminiFormat
from actors.adapters.gemini_conversation import FOREIGN_SIGNATURE
from actors.chat import ToolCall
from actors.messages import Request
from actors.validation import FieldError
from runtime.testing.protocols.base import (
    Answer,
    Call,
    Reason,
    StreamBody,
    Wire,
    WireError,
    count_tokens,
    dump,
    int_or_none,
    load_object,
    sse,
)

_GRPC_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


_GEMINI_TYPES = frozenset({"string", "number", "integer", "boolean", "array", "object", "null"})


def _gemini_schema_error(schema: Any, field: str) -> str | None:
    """What Gemini says of a bad function or response schema (JSON Schema or its OpenAPI
    subset), as ``field: message``; None for a good one."""
    if not isinstance(schema, dict):
        return f"{field}: Invalid JSON payload received. Expected an object."
    kinds = schema.get("type")
    for kind in kinds if isinstance(kinds, list) else [kinds]:
        if kind is not None and (not isinstance(kind, str) or kind.lower() not in _GEMINI_TYPES):
            return f"{field}.type: Invalid value {kind!r}"
    properties = schema.get("properties") or {}
    if not isinstance(properties, dict):
        return f"{field}.properties: Invalid JSON payload received. Expected an object."
    for index, name in enumerate(schema.get("required") or []):
        if name not in properties:
            return f"{field}.required[{index}]: property is not defined"
    subschemas = [(f"{field}.properties[{k}]", v) for k, v in properties.items()]
    if "items" in schema:
        subschemas.append((f"{field}.items", schema["items"]))
    for where, sub in subschemas:
        error = _gemini_schema_error(sub, where)
        if error is not None:
            return error
    return None


def _gemini_schemas(data: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every schema of a generateContent body, with the field naming it."""
    found = []
    for index, tool in enumerate(data.get("tools") or []):
        declarations = tool.get("functionDeclarations") if isinstance(tool, dict) else None
        for number, declaration in enumerate(declarations or []):
            for key in ("parametersJsonSchema", "parameters"):
                if isinstance(declaration, dict) and declaration.get(key) is not None:
                    field = f"tools[{index}].function_declarations[{number}].{key}"
                    found.append((field, declaration[key]))
    config = data.get("generationConfig")
    if isinstance(config, dict):
        for key in ("responseJsonSchema", "responseSchema"):
            if config.get(key) is not None:
                found.append((f"generation_config.{key}", config[key]))
    return found


#: Models that sign their function calls (thinking models) and, for Gemini 3, want them back.
_SIGNING_MODEL = re.compile(r"^gemini-(2\.5|3)")
_CHECKED_SIGNATURES_MODEL = re.compile(r"^gemini-3")
_SIGNATURE_PREFIX = b"fake-thought:"
_BYPASS_SIGNATURES = frozenset({FOREIGN_SIGNATURE, "context_engineering_is_the_way_to_go"})


def _thought_signature(call: ToolCall) -> str:
    return base64.b64encode(_SIGNATURE_PREFIX + call.id.encode()).decode()


def _signature_error(signature: object) -> str | None:
    if not signature:
        return (
            "Function call is missing a thought_signature in functionCall parts. This is "
            "required for tools to work correctly, and missing thought_signature may lead to "
            "degraded model performance."
        )
    if signature in _BYPASS_SIGNATURES:
        return None
    try:
        ours = base64.b64decode(str(signature), validate=True).startswith(_SIGNATURE_PREFIX)
    except ValueError:
        ours = False
    return None if ours else "Corrupted thought signature."


def _check_gemini_signatures(contents: Any) -> None:
    """Gemini 3's rule: in the current turn (since the last user text), the first function call
    of each model step carries the thought signature the model sent with it."""
    if not isinstance(contents, list):
        return
    turn_start = 0
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if content.get("role", "user") == "user" and any(
            isinstance(p, dict) and "functionResponse" not in p for p in parts or []
        ):
            turn_start = index
    for content in contents[turn_start:]:
        calls = [
            p for p in content.get("parts") or [] if isinstance(p, dict) and "functionCall" in p
        ]
        if content.get("role") == "model" and calls:
            error = _signature_error(calls[0].get("thoughtSignature"))
            if error is not None:
                raise WireError(400, "invalid_request", error)


def _gemini_request(data: dict[str, Any]) -> Request:
    """The body as a `Request`, or the 400 INVALID_ARGUMENT Gemini answers a bad one with:
    ``* GenerateContentRequest.<field>: <what>`` (a function response that answers no call of
    the turn before it says so in a sentence of its own)."""
    for field, schema in _gemini_schemas(data):
        error = _gemini_schema_error(schema, field)
        if error is not None:
            raise WireError(400, "invalid_request", f"* GenerateContentRequest.{error}")
    try:
        return GeminiFormat().read_request(data)
    except FieldError as exc:
        if exc.message.startswith("Please ensure"):
            raise WireError(400, "invalid_request", exc.message) from None
        raise WireError(
            400, "invalid_request", f"* GenerateContentRequest.{exc.field}: {exc.message}"
        ) from None


class GeminiWire(Wire):
    """Gemini `generateContent` / `streamGenerateContent` (SSE with `alt=sse`, else a JSON array).

    A missing key is answered 403 PERMISSION_DENIED, a wrong one 400 INVALID_ARGUMENT with the
    reason API_KEY_INVALID in its details, as Gemini does.
    Gemini's SSE separates events with CRLF, which parsers must accept.
    """

    models_path = "/v1beta/models"
    listed_models = ("gemini-2.5-flash", "gemini-2.5-pro")

    def models_reply(self) -> Any:
        return {
            "models": [
                {
                    "name": f"models/{model}",
                    "displayName": model,
                    "supportedGenerationMethods": ["generateContent", "countTokens"],
                }
                for model in self.listed_models
            ]
        }

    paths = (
        "/v1beta/models/{model}:generateContent",
        "/v1beta/models/{model}:streamGenerateContent",
    )
    auth_status = 403
    has_rate_limit_headers = False

    def presented_key(self, headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key")

    def parse(
        self, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: bytes
    ) -> Call:
        prefix = next((p for p in ("/v1beta/models/", "/v1/models/") if path.startswith(p)), None)
        model, _, method = path[len(prefix) :].rpartition(":") if prefix else ("", "", "")
        if not model or method not in ("generateContent", "streamGenerateContent"):
            raise WireError(
                404, "not_found", f"The requested URL {path} was not found on this server."
            )
        data = load_object(body, "Invalid JSON payload received.")
        request = _gemini_request(data)
        if _CHECKED_SIGNATURES_MODEL.match(model):
            _check_gemini_signatures(data["contents"])
        config = data.get("generationConfig", data.get("generation_config"))
        max_tokens = None
        if isinstance(config, dict):
            max_tokens = int_or_none(
                config.get("maxOutputTokens", config.get("max_output_tokens"))
            )
        return Call(
            model=model,
            prompt=request.last_user_text,
            prompt_tokens=sum(count_tokens(m.text) for m in request.conversation),
            max_tokens=max_tokens,
            stream=method == "streamGenerateContent",
            sse=query.get("alt") == "sse",
            request=request,
        )

    def _usage(self, answer: Answer) -> dict[str, int]:
        # A function call counts as the words of its name and arguments.
        output = answer.completion_tokens + sum(
            count_tokens(f"{c.name} {c.arguments}") for c in answer.tool_calls
        )
        return {
            "promptTokenCount": answer.prompt_tokens,
            "candidatesTokenCount": output,
            "totalTokenCount": answer.prompt_tokens + output,
        }

    def _response(
        self,
        call: Call,
        text: str,
        finish: str | None,
        usage: dict[str, int] | None,
        seq: int,
        calls: tuple[ToolCall, ...] = (),
    ) -> dict[str, Any]:
        # Gemini's function calls carry no id (the client matches responses by name).
        parts: list[dict[str, Any]] = [{"text": text}] if text or not calls else []
        for index, tool_call in enumerate(calls):
            part: dict[str, Any] = {
                "functionCall": {"name": tool_call.name, "args": tool_call.args}
            }
            if index == 0 and _SIGNING_MODEL.match(call.model):
                # A thinking model signs the first call of a step (parallel calls: the first).
                part["thoughtSignature"] = _thought_signature(tool_call)
            parts.append(part)
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
        if finish is not None:
            candidate["finishReason"] = finish
        candidate["index"] = 0
        body: dict[str, Any] = {"candidates": [candidate]}
        if usage is not None:
            body["usageMetadata"] = usage
        body["modelVersion"] = call.model
        body["responseId"] = f"fake{seq}"
        return body

    def _finish(self, answer: Answer) -> str:
        return "MAX_TOKENS" if answer.truncated else "STOP"

    def reply(self, call: Call, answer: Answer, seq: int) -> dict[str, Any]:
        finish, usage = self._finish(answer), self._usage(answer)
        return self._response(call, answer.text, finish, usage, seq, answer.tool_calls)

    def stream(self, call: Call, answer: Answer, seq: int) -> StreamBody:
        # Function calls arrive whole, in the last chunk, with the finish reason (STOP) and usage.
        events = [self._response(call, text, None, None, seq) for text in answer.chunks]
        final = self._response(
            call, "", self._finish(answer), self._usage(answer), seq, answer.tool_calls
        )
        if call.sse:
            return StreamBody(
                content_type="text/event-stream",
                prologue=(),
                chunks=tuple(sse(event, newline=b"\r\n") for event in events),
                epilogue=(sse(final, newline=b"\r\n"),),
            )
        # Without alt=sse Gemini streams one JSON array, element by element.
        return StreamBody(
            content_type="application/json; charset=UTF-8",
            prologue=(b"[",),
            chunks=tuple((b",\r\n" if i else b"") + dump(e) for i, e in enumerate(events)),
            epilogue=((b",\r\n" if events else b"") + dump(final) + b"]",),
        )

    def default_message(self, reason: Reason) -> str:
        return {
            "authentication": "API key not valid. Please pass a valid API key.",
            "permission": "API key not valid. Please pass a valid API key.",
            "rate_limit": "Resource has been exhausted (e.g. check quota).",
            "quota": (
                "You exceeded your current quota, please check your plan and billing details."
            ),
            "server_error": "An internal error has occurred. Please retry or report the issue.",
            "unavailable": "The model is overloaded. Please try again later.",
            "overloaded": "The model is overloaded. Please try again later.",
        }.get(reason) or super().default_message(reason)

    def error_body(self, status: int, reason: Reason, message: str | None = None) -> Any:
        name = _GRPC_STATUS.get(status, "INTERNAL" if status >= 500 else "FAILED_PRECONDITION")
        return {
            "error": {
                "code": status,
                "message": message or self.default_message(reason),
                "status": name,
            }
        }

    def auth_error(self, presented: str | None) -> WireError:
        """No key: 403 PERMISSION_DENIED. A wrong one: 400 INVALID_ARGUMENT with an ErrorInfo
        detail whose reason is API_KEY_INVALID, as generativelanguage.googleapis.com answers."""
        if not presented:
            return WireError(
                403,
                "permission",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        message = self.default_message("authentication")
        body = self.error_body(400, "invalid_request", message)
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            },
            {
                "@type": "type.googleapis.com/google.rpc.LocalizedMessage",
                "locale": "en-US",
                "message": message,
            },
        ]
        return WireError(400, "authentication", message, body)

    def stream_error_event(self, call: Call, sent_chunks: int) -> bytes:
        error = self.error_body(503, "unavailable")
        if call.sse:
            return sse(error, newline=b"\r\n")
        return (b",\r\n" if sent_chunks else b"") + dump(error) + b"]"

    def rate_limit_body(self, retry_after_s: float) -> Any:
        # Gemini also states the wait in the body, as a google.rpc.RetryInfo detail.
        body = self.error_body(429, "rate_limit")
        body["error"]["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{retry_after_s:g}s",
            }
        ]
        return body

    def context_message(self, tokens: int, limit: int) -> str:
        return (
            f"The input token count ({tokens}) exceeds the maximum number of tokens "
            f"allowed ({limit})."
        )

    def malformed_body(self) -> bytes:
        return b'{"candidates": [{"content": {"parts": [{"text": "ec'

    def malformed_event(self, call: Call) -> bytes:
        if not call.sse:
            return b'{"candidates": [{"content": '
        return b'data: {"candidates": [{"content": \r\n\r\n'


