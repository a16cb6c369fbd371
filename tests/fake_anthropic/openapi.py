"""Validate JSON against the public Anthropic OpenAPI document (needs jsonschema; tests only).

The document lives in the shared data beside the repository:
``$TARS_OPT_SHARED_DATA/anthropic-openapi/openapi.json`` (default ``<repo>/../shared/data``).
It is OpenAPI 3.1, whose schemas are JSON Schema 2020-12, so `jsonschema` resolves its
``#/components/schemas/...`` references directly. The document predates the SDK: fields it
lacks are accepted because its object schemas allow additional properties; required fields
are never relaxed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
# Read at import, before the test suite's autouse fixture clears TARS_OPT_* variables.
SHARED_DATA = Path(os.environ.get("TARS_OPT_SHARED_DATA", REPO.parent / "shared" / "data"))
OPENAPI_PATH = SHARED_DATA / "anthropic-openapi" / "openapi.json"
_URI = "urn:anthropic-openapi"

# Request bodies the API validates, by path (used by `request_validator`).
REQUEST_SCHEMAS = {
    "/v1/messages": "CreateMessageParams",
    "/v1/messages/count_tokens": "CountMessageTokensParams",
    "/v1/messages/batches": "CreateMessageBatchParams",
}


class OpenAPISchemas:
    """Component schemas of one OpenAPI document, ready to validate instances against."""

    def __init__(self, path: Path = OPENAPI_PATH) -> None:
        from jsonschema import Draft202012Validator, FormatChecker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.path = path
        self.document: dict[str, Any] = json.loads(path.read_text())
        resource = Resource.from_contents(self.document, default_specification=DRAFT202012)
        self._registry = Registry().with_resource(_URI, resource)
        self._formats = FormatChecker(formats=())

        @self._formats.checks("date-time", raises=ValueError)
        def _date_time(value: object) -> bool:
            # RFC 3339 needs a time zone; fromisoformat also accepts a trailing Z on 3.11+.
            return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None

        self._validator_cls = Draft202012Validator
        self._validators: dict[str, Any] = {}

    @property
    def names(self) -> set[str]:
        return set(self.document["components"]["schemas"])

    def _validator(self, name: str) -> Any:
        if name not in self._validators:
            if name not in self.names:
                raise KeyError(f"no schema {name!r} in {self.path}")
            ref = {"$ref": f"{_URI}#/components/schemas/{name}"}
            self._validators[name] = self._validator_cls(
                ref, registry=self._registry, format_checker=self._formats
            )
        return self._validators[name]

    def errors(self, name: str, instance: Any) -> list[str]:
        """Every violation of schema `name` by `instance`, as "path: message" strings."""
        found = []
        for error in self._validator(name).iter_errors(instance):
            # For oneOf/anyOf, the most specific sub-error says more than "not valid under any".
            detail = min(error.context or [error], key=lambda e: -len(e.absolute_path))
            where = "/".join(str(p) for p in detail.absolute_path) or "<root>"
            found.append(f"{where}: {detail.message}")
        return found

    def validate(self, name: str, instance: Any) -> None:
        """Raise AssertionError listing the violations of schema `name`."""
        problems = self.errors(name, instance)
        if problems:
            raise AssertionError(f"{name} violations:\n  " + "\n  ".join(problems[:20]))

    def request_validator(self) -> Callable[[str, dict[str, Any]], str | None]:
        """A `FakeAnthropic.request_validator` that 400s request bodies the document rejects."""

        def check(path: str, body: dict[str, Any]) -> str | None:
            name = REQUEST_SCHEMAS.get(path)
            problems = self.errors(name, body) if name else []
            return "; ".join(problems[:5]) or None

        return check


@lru_cache(maxsize=2)
def load_schemas(path: Path = OPENAPI_PATH) -> OpenAPISchemas:
    """The parsed document, loaded once per process (it is 1.4 MB)."""
    return OpenAPISchemas(path)
