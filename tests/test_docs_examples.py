"""The code shown in docs/writing-a-method.md is the library's own, tested code."""

import ast
import inspect
import pathlib
import re

import tfssl

PAGE = pathlib.Path(__file__).resolve().parents[1] / "docs" / "writing-a-method.md"


def _without_docstrings(tree):
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.ClassDef, ast.FunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def _page_blocks():
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_example_is_the_library_code():
    blocks = _page_blocks()
    classes = {
        "FlexMatchThreshold": tfssl.models.policies.FlexMatchThreshold,
        "FlexMatch": tfssl.models.FlexMatch,
    }
    shown = {}
    for block in blocks:
        tree = ast.parse(block)
        shown[tree.body[0].name] = _without_docstrings(tree)
    assert set(shown) == set(classes)
    for name, cls in classes.items():
        source = ast.parse(inspect.getsource(cls))
        source.body[0].decorator_list = []
        # The page leaves out `get_config`, as it says.
        source.body[0].body = [
            node for node in source.body[0].body
            if not (isinstance(node, ast.FunctionDef) and node.name == "get_config")
        ]
        assert shown[name] == _without_docstrings(source), name


def test_the_example_is_at_most_60_lines_and_the_page_says_how_many():
    lines = sum(len([line for line in b.splitlines() if line.strip()]) for b in _page_blocks())
    assert lines <= 60
    assert f"in {lines} lines" in PAGE.read_text()


def test_the_readme_table_lists_every_model():
    readme = (PAGE.parents[1] / "README.md").read_text()
    models = [
        name for name in tfssl.models.__all__
        if inspect.isclass(getattr(tfssl.models, name))
        and issubclass(getattr(tfssl.models, name), tfssl.models.SemiSupervisedModel)
        and name != "SemiSupervisedModel"
    ]
    missing = [name for name in models if f"| `{name}` |" not in readme]
    assert not missing
