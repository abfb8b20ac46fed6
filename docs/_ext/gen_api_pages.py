"""Writes the API reference pages at build time (mkdocs-gen-files) and their navigation
(mkdocs-literate-nav): one page per public name of `tfssl.models` and one per public module
of `tfssl`, read from their `__all__`, so a model or module added there gets its page.

`api_pages()` lists the pages without writing them (the packaging tests use it).
"""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The method-family page of each model, for the line above its reference; names not listed
# get no such line.
FAMILY_PAGES = {
    "SemiSupervisedModel": ("writing a method", "writing-a-method.md"),
    "PiModel": ("consistency", "methods/consistency.md"),
    "TemporalEnsembling": ("consistency", "methods/consistency.md"),
    "MeanTeacher": ("consistency", "methods/consistency.md"),
    "VAT": ("adversarial", "methods/adversarial.md"),
    "AdversarialTraining": ("adversarial", "methods/adversarial.md"),
    "PerturbationSite": ("adversarial", "methods/adversarial.md"),
    "adversarial_inputs": ("adversarial", "methods/adversarial.md"),
    "PseudoLabel": ("pseudo-labels", "methods/pseudo-labels.md"),
    "PseudoLabelMonitor": ("pseudo-labels", "methods/pseudo-labels.md"),
    "FixMatch": ("pseudo-labels", "methods/pseudo-labels.md"),
    "FlexMatch": ("pseudo-labels", "methods/pseudo-labels.md"),
    "FreeMatch": ("pseudo-labels", "methods/pseudo-labels.md"),
    "SoftMatch": ("pseudo-labels", "methods/pseudo-labels.md"),
    "AdaMatch": ("pseudo-labels", "methods/pseudo-labels.md"),
    "UDA": ("pseudo-labels", "methods/pseudo-labels.md"),
    "MixupModel": ("mixup and MixMatch", "methods/mixup.md"),
    "MixMatch": ("mixup and MixMatch", "methods/mixup.md"),
    "Distiller": ("distillation, mutual learning, ReLoop", "methods/distillation.md"),
    "MutualLearning": ("distillation, mutual learning, ReLoop", "methods/distillation.md"),
    "ReLoop": ("distillation, mutual learning, ReLoop", "methods/distillation.md"),
    "ELR": ("noisy labels", "noisy-labels.md"),
    "CoTeaching": ("noisy labels", "noisy-labels.md"),
    "DivideMix": ("noisy labels", "noisy-labels.md"),
}
# Modules documented beside those of `tfssl.__all__`.
EXTRA_MODULES = ("testing",)


def _all_names(relative_path):
    """The `__all__` list of a module, read without importing it."""
    with open(os.path.join(ROOT, relative_path), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"No __all__ in the module. Received: relative_path={relative_path!r}")


def _shadowed_modules():
    """Modules of `tfssl` whose public function has the module's name (`self_training`)."""
    with open(os.path.join(ROOT, "tfssl", "__init__.py"), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    return {
        node.module.rsplit(".", 1)[1]
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.startswith("tfssl.")
        and any(alias.name == node.module.rsplit(".", 1)[1] for alias in node.names)
    }


def _model_page(name):
    lines = [f"# {name}", ""]
    if name in FAMILY_PAGES:
        title, page = FAMILY_PAGES[name]
        lines += [f"The method and its equations: [{title}](../../{page}).", ""]
    lines += [f"::: tfssl.models.{name}", ""]
    return "\n".join(lines)


def _module_page(name, shadowed):
    identifier = f"tfssl.{name}.{name}" if name in shadowed else f"tfssl.{name}"
    return "\n".join(
        [
            f"# tfssl.{name}",
            "",
            f"::: {identifier}",
            "    options:",
            "      show_root_heading: false",
            "",
        ]
    )


def api_pages():
    """Returns `(models, modules)`: lists of `(nav title, page path under docs/, text)`."""
    family_order = list(FAMILY_PAGES)
    names = _all_names(os.path.join("tfssl", "models", "__init__.py"))
    names.sort(key=lambda n: (family_order.index(n) if n in family_order else len(family_order), n))
    models = [(name, f"api/models/{name}.md", _model_page(name)) for name in names]
    shadowed = _shadowed_modules()
    module_names = [n for n in _all_names(os.path.join("tfssl", "__init__.py")) if n != "models"]
    module_names = sorted(set(module_names) | set(EXTRA_MODULES))
    modules = [
        (f"tfssl.{name}", f"api/{name}.md", _module_page(name, shadowed)) for name in module_names
    ]
    return models, modules


def _write_pages():
    import mkdocs_gen_files

    models, modules = api_pages()
    summary = ["* [Overview](index.md)", "* Models"]
    for title, path, text in models:
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
        summary.append(f"    * [{title}]({path.removeprefix('api/')})")
    for title, path, text in modules:
        with mkdocs_gen_files.open(path, "w") as f:
            f.write(text)
        summary.append(f"* [{title}]({path.removeprefix('api/')})")
    with mkdocs_gen_files.open("api/SUMMARY.md", "w") as f:
        f.write("\n".join(summary) + "\n")


if __name__ in ("__main__", "<run_path>"):
    _write_pages()
