"""Every public name is importable, documented, and listed in its module's __all__."""

import importlib
import inspect

import pytest

import tfssl

MODULES = [
    "backbones",
    "data",
    "datasets",
    "export",
    "label_issues",
    "layers",
    "losses",
    "models",
    "schedules",
    "text",
]
# Top-level functions, each defined in the module of the same name.
FUNCTIONS = ["self_training"]


def test_top_level_exports_the_modules_and_functions():
    assert sorted(tfssl.__all__) == sorted(MODULES + FUNCTIONS)
    for name in FUNCTIONS:
        assert inspect.isfunction(getattr(tfssl, name)), name


@pytest.mark.parametrize("module_name", MODULES + FUNCTIONS + ["testing", "reference"])
def test_public_names_exist_and_have_docstrings(module_name):
    module = importlib.import_module(f"tfssl.{module_name}")
    assert module.__doc__, f"tfssl.{module_name} has no module docstring"
    for name in module.__all__:
        value = getattr(module, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            doc = inspect.getdoc(value) or ""
            assert doc, f"tfssl.{module_name}.{name} has no docstring"
            if module_name not in ("reference", "testing") and inspect.isfunction(value):
                assert "Args:" in doc or not inspect.signature(value).parameters, name
                assert "Returns:" in doc, f"tfssl.{module_name}.{name} lacks Returns:"
