"""One error base: every error tars-opt raises on purpose is a TarsOptError defined in
tars_opt.errors, and the CLI turns each into one line and the exit code of its kind."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
import typer

import tars_opt
from tars_opt import errors
from tars_opt.cli.common import friendly_errors

# Raised only inside the embeddings package and turned into EmbeddingUnavailable there.
INTERNAL = {"tars_opt.embeddings.onnx_outputs.OnnxEditError"}


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(tars_opt.__path__, "tars_opt."):
        if info.name.endswith("__main__"):  # importing it runs the CLI
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("tars_opt"):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return found


def test_every_error_class_lives_in_errors_and_derives_from_the_base() -> None:
    found = _defined_exceptions()
    assert len(found) > 10
    for name, cls in found.items():
        if name in INTERNAL:
            continue
        assert cls.__module__ == "tars_opt.errors", name
        assert issubclass(cls, errors.TarsOptError), name


def _all_errors() -> list[type[errors.TarsOptError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.TarsOptError)
    ]


def _code(cls: type[errors.TarsOptError]) -> int:
    if issubclass(cls, errors.BackendError | errors.DatabaseUnreachable):
        return 1
    return 3 if issubclass(cls, errors.BudgetExceeded) else 2


@pytest.mark.parametrize("cls", _all_errors(), ids=lambda c: c.__name__)
def test_the_cli_prints_one_line_and_the_exit_code_of_each_kind(
    cls: type[errors.TarsOptError], capsys: pytest.CaptureFixture[str]
) -> None:
    if cls is errors.BaselineRefused:
        exc = cls("what went wrong: do this", [])
    elif cls is errors.Refusal:
        exc = cls(400, "what went wrong: do this")
    else:
        exc = cls("what went wrong: do this")
    with pytest.raises(typer.Exit) as exit_, friendly_errors():
        raise exc
    assert exit_.value.exit_code == _code(cls)
    prefix = "refused" if cls is errors.BudgetExceeded else "error"
    assert capsys.readouterr().err == f"{prefix}: what went wrong: do this\n"


def test_other_exceptions_are_not_swallowed() -> None:
    with pytest.raises(ZeroDivisionError), friendly_errors():
        1 / 0  # noqa: B018


def test_the_package_exports_the_base_and_the_errors_a_library_user_meets() -> None:
    for name in ("TarsOptError", "InputError", "ConfigError", "BackendError", "BudgetExceeded",
                 "DatabaseError", "MissingApiKey", "UnknownModelPrice"):  # fmt: skip
        assert getattr(tars_opt, name) is getattr(errors, name)
        assert name in tars_opt.__all__
